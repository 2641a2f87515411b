"""A three-node RabbitMQ cluster whose quorum-queue leader node stops mid-batch: the services,
given every node's address, move to another node, and every accepted job ends completed once.

The cluster is three private nodes (``rabbitnode.private_cluster``), not the shared broker
joined by two extra ones: stopping a node then disturbs nobody else, and no queue that other
users of the shared broker declare meanwhile gets members on nodes the test removes.
Everything connects to the first address first, so the requester declares Shoal's quorum
queues there and that node leads them (RabbitMQ places a new queue's leader on the declaring
client's node); the test checks that, and that each queue has a member on all three nodes,
before it stops that node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.topology import COMPUTE_QUEUE, SUBMIT_QUEUE

from .cluster import Cluster, shell_job
from .figures import LONG, Case, Figures
from .rabbitnode import RabbitNode, private_cluster

pytestmark = [
    pytest.mark.faults,
    pytest.mark.docker,
    pytest.mark.rabbitmq,
]


@pytest.fixture
def rabbit_cluster() -> Iterator[list[RabbitNode]]:
    """Three private nodes in one cluster, stopped at the end."""
    with private_cluster(3) as nodes:
        yield nodes


@pytest.mark.timeout(1200 if LONG else 900)
async def test_leader_node_stopped_mid_batch(
    rabbit_cluster: list[RabbitNode], tmp_path: Path, figures: Figures
) -> None:
    count = 500
    leader, *others = rabbit_cluster
    urls = ",".join(node.url for node in rabbit_cluster)
    cluster = Cluster(urls, tmp_path)
    try:
        await cluster.start_requester()
        await cluster.start_executor(0, slots=4)
        queues = await asyncio.to_thread(leader.quorum_queues)
        everyone = sorted(node.name for node in rabbit_cluster)
        for name in (SUBMIT_QUEUE, COMPUTE_QUEUE):
            assert queues[name].leader == leader.name, queues
            assert queues[name].members == everyone, queues
        ids = [await cluster.publish(shell_job("true")) for _ in range(count)]
        ended = await cluster.ended(count // 10, 120)  # the batch runs: mid-way, stop the leader
        await asyncio.to_thread(leader.stop)
        assert ended < count, "the node stopped after every job had ended"
        await asyncio.to_thread(others[0].led_elsewhere, COMPUTE_QUEUE, leader.name)
        await cluster.settle(ids, 120)
        brokers = "\n".join([await asyncio.to_thread(node.snapshot) for node in others])
        await cluster.shutdown()
        audit = await cluster.audit(ids)
    finally:
        await cluster.shutdown()
    figures.add(Case("clustered broker", {"leader node stopped": 1}, submitted=count).judged(audit))
    assert audit.clean, f"{audit}\n{brokers}"
    assert audit.states == {"completed": count}, f"{audit}\n{brokers}"
