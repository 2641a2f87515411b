"""Executor SIGKILL at random points of jobs' lives: before start, running, at exit."""

from __future__ import annotations

import asyncio
import random

import pytest

from .cluster import Cluster, shell_job
from .figures import LONG, Case, Figures

pytestmark = [pytest.mark.faults, pytest.mark.docker, pytest.mark.rabbitmq]

SEED = 1313
PHASES = ("before_start", "running", "at_exit")


def running_node(cluster: Cluster, job_id: str) -> str | None:
    """The node whose executor recorded a run of ``job_id`` (its ID starts with the node)."""
    for run in cluster.rows("SELECT executor FROM executions WHERE job_id = ?", job_id):
        for node in cluster.executors:
            if str(run["executor"]).startswith(f"{node}-"):
                return node
    return None


async def kill_at(
    cluster: Cluster, rng: random.Random, job_id: str, phase: str, run: float
) -> bool:
    """SIGKILL the executor holding ``job_id`` at ``phase``, restart it on the same node;
    whether a kill happened (the job may already be past the phase)."""
    node = rng.choice(sorted(cluster.executors))
    if phase == "before_start":
        await asyncio.sleep(rng.uniform(0.0, 0.3))
    else:
        if await cluster.wait_state(job_id, {"running"}, 60) is None:
            return False
        node = running_node(cluster, job_id) or node
        if phase == "at_exit":
            await asyncio.sleep(run + rng.uniform(0.0, 0.2))
    victim = cluster.executors[node]
    await victim.kill()
    await cluster.start_executor(int(node.rsplit("-", 1)[1]))
    return True


@pytest.mark.timeout(1200 if LONG else 240)
async def test_executor_sigkill_at_random_points(cluster: Cluster, figures: Figures) -> None:
    rng = random.Random(SEED)
    kills = 20 if LONG else 3
    await cluster.start_requester()
    for index in range(2):
        await cluster.start_executor(index)
    replies = []
    injected = dict.fromkeys(PHASES, 0)
    for _ in range(kills):
        for _ in range(2):  # bystanders: other jobs in flight around each kill
            replies.append(await cluster.submit(shell_job(f"sleep {rng.uniform(0.1, 1):.2f}")))
        phase = rng.choice(PHASES)
        run = rng.uniform(0.5, 2.0)
        target = await cluster.submit(shell_job(f"echo start; sleep {run:.2f}; echo end"))
        replies.append(target)
        job_id = (await cluster.accepted([target], 30))[0]
        injected[phase] += await kill_at(cluster, rng, job_id, phase, run)
    ids = await cluster.accepted(replies, 60)
    await cluster.settle(ids, 180)
    await cluster.shutdown()
    audit = await cluster.audit(ids)
    figures.add(
        Case(
            "executor SIGKILL",
            {f"executor SIGKILL {p}": n for p, n in injected.items()},
            submitted=len(replies),
        ).judged(audit)
    )
    assert audit.clean, str(audit)
