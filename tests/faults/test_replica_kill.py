"""An executor SIGKILLed beside another of its node (``docker compose --scale``): the other
one reaps the killed one's job container within its reaping period, without a restart, and
keeps running; the job ends truthfully."""

from __future__ import annotations

import asyncio

import aiodocker
import pytest

from shoal.executor.engines.docker.runner import LABEL_EXECUTOR

from .cluster import Cluster, Service, shell_job
from .figures import Case, Figures

pytestmark = [pytest.mark.faults, pytest.mark.docker, pytest.mark.rabbitmq]

REAP_EVERY = 1.0
REAPED_WITHIN = 2 * REAP_EVERY + 5.0
"""Two rounds (an executor must be gone at two in a row) and the removal itself."""


def timed_out(row: dict[str, object]) -> bool:
    return row["state"] == "failed" and "timed out" in str(row["error"])


async def job_container(docker: aiodocker.Docker, job_id: str) -> tuple[str, str]:
    """The ID of ``job_id``'s running container and the executor that made it."""
    async with asyncio.timeout(60):
        while True:
            found = await docker.containers.list(filters={"label": [f"shoal.job_id={job_id}"]})
            if found:
                info = await found[0].show()
                return str(found[0].id), str(info["Config"]["Labels"][LABEL_EXECUTOR])
            await asyncio.sleep(0.1)


async def gone(docker: aiodocker.Docker, container: str, within: float) -> bool:
    """Whether ``container`` is removed within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        try:
            await docker.containers.get(container)
        except aiodocker.DockerError as error:
            if error.status == 404:
                return True
            raise
        await asyncio.sleep(0.1)
    return False


@pytest.mark.timeout(120)
async def test_a_killed_replicas_container_is_reaped_by_its_node_mate(
    cluster: Cluster, figures: Figures
) -> None:
    await cluster.start_requester()
    every = str(REAP_EVERY)
    replicas = [
        await cluster.start_executor(0, slots=1, SHOAL_REAP_EVERY=every),
        await cluster.start_executor(0, slots=1, beside=True, SHOAL_REAP_EVERY=every),
    ]
    job = shell_job("echo started; sleep 300", timeouts={"execution": 8})
    reply = await cluster.submit(job, expect=timed_out)
    ids = await cluster.accepted([reply], 30)
    docker = aiodocker.Docker()
    try:
        container, holder = await job_container(docker, job.id)
        victim: Service = next(
            s for s in replicas if holder.startswith(f"{cluster.node(0)}-{s.process.pid}-")
        )
        survivor = next(s for s in replicas if s is not victim)
        await victim.kill()
        assert await gone(docker, container, REAPED_WITHIN), "the orphan was not reaped"
    finally:
        await docker.close()
    assert survivor.alive
    reaped = [e for e in survivor.events if e.get("event") == "orphans.reaped"]
    assert [e.get("count") for e in reaped] == [1], reaped
    await cluster.settle(ids, 60)
    await cluster.shutdown()
    audit = await cluster.audit(ids)
    figures.add(
        Case("executor replica SIGKILL", {"executor replica SIGKILL running": 1}, 1).judged(audit)
    )
    assert audit.clean, str(audit)
