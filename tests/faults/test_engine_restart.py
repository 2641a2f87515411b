"""A Docker engine restart while jobs run, on an engine of the test's own: the jobs it
killed end failed as an engine failure (or completed), a job whose policy retries engine
failures completes on its next attempt, and the executor recovers by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, shell_job
from .dockernode import DockerNode, private_docker
from .figures import LONG, Case, Figures

pytestmark = [pytest.mark.faults, pytest.mark.docker, pytest.mark.rabbitmq]

ENGINE_GONE = "executor error: the Docker engine stopped or restarted while the job ran"
RETRY = {"attempts": 3, "backoff": 5}
"""Retries on engine failures (the default kinds), the first once the engine is back."""


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
    retried: list[str] = []
    try:
        await cluster.start_requester()
        for index in range(2):
            await cluster.start_executor(index, slots=2)
        for _ in range(restarts):
            hit = [await cluster.publish(shell_job("echo start; sleep 20")) for _ in range(3)]
            retried.append(await cluster.publish(shell_job("echo start; sleep 20", retries=RETRY)))
            ids += [*hit, retried[-1]]
            assert await running(cluster, hit, 2, 120) >= 2, "no job was running"
            assert await running(cluster, retried[-1:], 1, 60), "the retried job did not run"
            await asyncio.to_thread(docker_node.stop)
            await asyncio.to_thread(docker_node.start)
            later = [await cluster.publish(shell_job("echo after the restart")) for _ in range(4)]
            after += later
            await cluster.settle(ids + after, 180)
        ids += after
        await cluster.shutdown()
        audit = await cluster.audit(ids)
        jobs = {r["id"]: r for r in cluster.rows("SELECT id, state, error FROM jobs")}
        runs = cluster.rows("SELECT job_id, error FROM executions WHERE error IS NOT NULL")
    finally:
        await cluster.shutdown()
    figures.add(
        Case("Docker engine restart", {"engine restart": restarts}, submitted=len(ids)).judged(
            audit
        )
    )
    assert audit.clean, str(audit)
    assert {jobs[i]["state"] for i in after} == {"completed"}, "the executor did not recover"
    killed = [jobs[i]["error"] for i in ids if jobs[i]["state"] == "failed"]
    assert any(str(e).startswith(ENGINE_GONE) for e in killed), killed
    assert all(str(e).startswith("executor error: ") for e in killed), killed
    assert {jobs[i]["state"] for i in retried} == {"completed"}, "not retried"
    for job_id in retried:
        failed = [str(r["error"]) for r in runs if r["job_id"] == job_id]
        assert any(e.startswith(ENGINE_GONE) for e in failed), (job_id, failed)
