"""Requester SIGKILL at random moments of a burst: between store write, compute publish and
ack, every submission becomes one job that runs once."""

from __future__ import annotations

import asyncio
import random

import pytest

from .cluster import Cluster, shell_job
from .figures import LONG, Case, Figures

pytestmark = [pytest.mark.faults, pytest.mark.docker, pytest.mark.rabbitmq]

SEED = 1314


@pytest.mark.timeout(1200 if LONG else 240)
async def test_requester_sigkill_during_a_burst(cluster: Cluster, figures: Figures) -> None:
    rng = random.Random(SEED)
    count, kills = (300, 6) if LONG else (60, 2)
    for index in range(2):
        await cluster.start_executor(index, slots=3)
    await cluster.start_requester()
    replies: list[asyncio.Future[bytes]] = []

    async def burst() -> None:  # the submissions keep coming while the requester dies
        for n in range(count):
            replies.append(await cluster.submit(shell_job("true")))
            if n % 10 == 9:
                await asyncio.sleep(0.1)

    submitting = asyncio.create_task(burst())
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        assert cluster.requester is not None
        await cluster.requester.kill()
        await cluster.start_requester()
    await submitting
    ids = await cluster.accepted(replies, 120)
    assert len(set(ids)) == count, "a submission was answered with two different jobs"
    await cluster.settle(ids, 300 if LONG else 120)
    await cluster.shutdown()
    audit = await cluster.audit(ids)
    figures.add(
        Case("requester SIGKILL", {"requester SIGKILL": kills}, submitted=count).judged(audit)
    )
    assert audit.clean, str(audit)
