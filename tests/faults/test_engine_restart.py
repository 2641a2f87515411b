"""A Docker engine restart while jobs run, on an engine of the test's own: the jobs it
killed end failed with a reason (or completed), and the executor recovers by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, shell_job
from .dockernode import DockerNode, private_docker
from .figures import LONG, Case, Figures

pytestmark = [pytest.mark.faults, pytest.mark.docker, pytest.mark.rabbitmq]


@pytest.fixture
def docker_node() -> Iterator[DockerNode]:
    """A private Docker engine (never the shared one), removed at the end."""
    with private_docker() as node:
        yield node


async def running(cluster: Cluster, ids: list[str], at_least: int, within: float) -> int:
    """How many of ``ids`` are running (their container wrote its first line) once
    ``at_least`` are (or at the deadline)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    count = 0
    while loop.time() < end:
        logged = {str(r["job_id"]) for r in cluster.rows("SELECT job_id FROM log_chunks")}
        count = len(logged & set(ids))
        if count >= at_least:
            break
        await asyncio.sleep(0.1)
    return count


@pytest.mark.timeout(900 if LONG else 300)
async def test_engine_restart_while_jobs_run(
    docker_node: DockerNode, vhost_url: str, tmp_path: Path, figures: Figures
) -> None:
    restarts = 3 if LONG else 1
    cluster = Cluster(vhost_url, tmp_path, docker_url=docker_node.url)
    ids: list[str] = []
    after: list[str] = []
    try:
        await cluster.start_requester()
        for index in range(2):
            await cluster.start_executor(index, slots=2)
        for _ in range(restarts):
            hit = [await cluster.publish(shell_job("echo start; sleep 20")) for _ in range(4)]
            ids += hit
            assert await running(cluster, hit, 2, 120) >= 2, "no job was running"
            await asyncio.to_thread(docker_node.stop)
            await asyncio.to_thread(docker_node.start)
            later = [await cluster.publish(shell_job("echo after the restart")) for _ in range(4)]
            after += later
            await cluster.settle(ids + after, 180)
        ids += after
        await cluster.shutdown()
        audit = await cluster.audit(ids)
        states = cluster.states()
    finally:
        await cluster.shutdown()
    figures.add(
        Case("Docker engine restart", {"engine restart": restarts}, submitted=len(ids)).judged(
            audit
        )
    )
    assert audit.clean, str(audit)
    assert {states[i] for i in after} == {"completed"}, "the executor did not recover"
