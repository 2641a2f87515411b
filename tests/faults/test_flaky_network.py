"""A TCP proxy between the services and the broker that drops and stalls connections at
random for a bounded time: every job still ends once, truthfully."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .cluster import Cluster, shell_job
from .figures import LONG, Case, Figures
from .proxy import ChaosProxy

pytestmark = [
    pytest.mark.faults,
    pytest.mark.docker,
    pytest.mark.rabbitmq,
]

SEED = 1315


@pytest.fixture
async def proxy(vhost_url: str) -> AsyncIterator[ChaosProxy]:
    """A chaos proxy in front of the broker of the case's vhost; closed at the end."""
    address = urlsplit(vhost_url)
    made = ChaosProxy(address.hostname or "127.0.0.1", address.port or 5672, random.Random(SEED))
    await made.start()
    yield made
    await made.close()


@pytest.fixture
async def proxied(vhost_url: str, proxy: ChaosProxy, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster whose services reach the broker only through the proxy."""
    address = urlsplit(vhost_url)
    through = address._replace(
        netloc=f"{address.username}:{address.password}@127.0.0.1:{proxy.port}"
    )
    made = Cluster(vhost_url, tmp_path, service_url=through.geturl())
    try:
        yield made
    finally:
        await made.shutdown()
        await made.clear_leftovers()


@pytest.mark.timeout(1200 if LONG else 240)
async def test_drops_and_stalls_lose_and_double_nothing(
    proxied: Cluster, proxy: ChaosProxy, figures: Figures
) -> None:
    rng = random.Random(SEED)
    count, storm = (200, 60.0) if LONG else (40, 15.0)
    await proxied.start_requester()
    for index in range(2):
        await proxied.start_executor(index, slots=2)
    proxy.storm(storm)
    replies = []
    for _ in range(count):
        replies.append(await proxied.submit(shell_job(f"sleep {rng.uniform(0, 0.5):.2f}")))
        await asyncio.sleep(rng.uniform(0, 2 * storm / count))
    await proxy.calm()
    ids = await proxied.accepted(replies, 120)
    await proxied.settle(ids, 180 if LONG else 90)
    await proxied.shutdown()
    audit = await proxied.audit(ids)
    faults = {"connection drops": proxy.drops, "connection stalls": proxy.stalls}
    figures.add(Case("flaky broker connections", faults, submitted=count).judged(audit))
    assert audit.clean, str(audit)
