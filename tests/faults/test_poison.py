"""Poison messages: submissions and compute messages that are not JSON or have the wrong
shape, and a job that crashes its executor every time it runs. Nothing is left stuck: the
bad messages are answered or dead-lettered, the crashing job ends ``failed`` with the reason
(the requester's dead-letter consumer), and the services keep working."""

from __future__ import annotations

import asyncio

import pytest

from shoal.topology import COMPUTE_QUEUE, DELIVERY_LIMIT
from shoal.wire import SubmitReply, decode

from .cluster import Cluster, shell_job
from .figures import Case, Figures

pytestmark = [pytest.mark.faults, pytest.mark.docker, pytest.mark.rabbitmq]

POISON = [b"not json at all \xff", b'{"job": 5}', b"[]", b'{"version": 1, "job": {"tasks": []}}']


def runs_of(cluster: Cluster, job_id: str) -> list[str]:
    rows = cluster.rows("SELECT executor FROM executions WHERE job_id = ?", job_id)
    return [str(r["executor"]) for r in rows]


async def crash_each_run(cluster: Cluster, job_id: str, within: float) -> int:
    """SIGKILL the executor each time it starts ``job_id`` (and start it again) until the
    job ends; how many crashes that took."""
    crashes = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end and cluster.states().get(job_id) not in {"failed", "stopped"}:
        if len(runs_of(cluster, job_id)) > crashes:
            crashes += 1
            await cluster.executors[cluster.node(0)].kill()
            await cluster.start_executor(0, slots=1)
        await asyncio.sleep(0.05)
    return crashes


def dead_lettered(row: dict[str, object]) -> bool:
    return row["state"] == "failed" and "delivery limit" in str(row["error"])


@pytest.mark.timeout(300)
async def test_poison_messages_end_truthfully(cluster: Cluster, figures: Figures) -> None:
    await cluster.start_requester()
    await cluster.start_executor(0, slots=1)
    client = await cluster.client()
    answers = []
    for body in POISON:
        future = await client.send(body)
        assert future is not None
        answers.append(future)
        await client.send(body, queue=COMPUTE_QUEUE, reply=False)
    async with asyncio.timeout(30):
        replies = [decode(body, SubmitReply) for body in await asyncio.gather(*answers)]
    assert all(r.job_id is None and r.error is not None for r in replies), replies

    crashing = shell_job("echo this job takes its executor down; sleep 30")
    replies_of_jobs = [await cluster.submit(crashing, expect=dead_lettered)]
    crashing_id = (await cluster.accepted(replies_of_jobs, 30))[0]
    crashes = await crash_each_run(cluster, crashing_id, 240)
    replies_of_jobs.append(await cluster.submit(shell_job("echo still working")))
    ids = await cluster.accepted(replies_of_jobs, 30)
    await cluster.settle(ids, 60)
    assert cluster.requester is not None
    assert cluster.requester.alive
    await cluster.shutdown()
    audit = await cluster.audit(ids)
    faults = {
        "poison submissions": len(POISON),
        "poison compute messages": len(POISON),
        "executor crashes by a job": crashes,
    }
    figures.add(Case("poison messages", faults, submitted=len(ids)).judged(audit))
    assert audit.clean, str(audit)
    assert crashes > DELIVERY_LIMIT - 1
