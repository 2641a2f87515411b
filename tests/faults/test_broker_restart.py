"""A broker restart during a burst of submissions, on a RabbitMQ node of the test's own: every
confirmed submission becomes one job that runs once and ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, shell_job
from .figures import LONG, Case, Figures
from .rabbitnode import RabbitNode, private_rabbit

pytestmark = [
    pytest.mark.faults,
    pytest.mark.docker,
    pytest.mark.rabbitmq,
]


@pytest.fixture
def rabbit_node() -> Iterator[RabbitNode]:
    """A private RabbitMQ node (never the shared one), stopped at the end."""
    with private_rabbit() as node:
        yield node


@pytest.mark.timeout(1200 if LONG else 300)
async def test_broker_restart_during_a_burst(
    rabbit_node: RabbitNode, tmp_path: Path, figures: Figures
) -> None:
    count = 500 if LONG else 100
    cluster = Cluster(rabbit_node.url, tmp_path)
    try:
        await cluster.start_requester()
        for index in range(2):
            await cluster.start_executor(index, slots=3)
        # all at once: the burst arrives faster than the requester handles it, so the
        # restart usually meets submissions still in its hands (not always: it is fast)
        ids = list(
            await asyncio.gather(*(cluster.publish(shell_job("true")) for _ in range(count)))
        )
        await cluster.stored(count // 10, 60)
        ended = await cluster.ended(count, 0)
        await asyncio.to_thread(rabbit_node.stop)
        await asyncio.to_thread(rabbit_node.start)
        assert ended < count, "the restart came after every job had ended"
        await cluster.settle(ids, 420 if LONG else 150)
        await cluster.shutdown()
        audit = await cluster.audit(ids)
    finally:
        await cluster.shutdown()
    figures.add(Case("broker restart", {"broker restart": 1}, submitted=count).judged(audit))
    assert audit.clean, str(audit)
