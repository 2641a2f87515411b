"""``--queue-timeout``, ``--wait-timeout`` and ``shoal job wait`` end to end, no executor
running unless a stand-in one is asked for."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.model import Job, JobState
from shoal.requester.service import Requester
from shoal.topology import COMPUTE_QUEUE
from shoal.wire import JobEvent
from tests.requester.test_submit import queue_depth

from .conftest import Shoal
from .fake_executor import fake_executor
from .test_cli import RUN, fail, succeed

pytestmark = pytest.mark.rabbitmq


def by_label(job: Job) -> list[JobEvent]:
    """Fail the jobs labelled ``outcome=fail``, complete the others."""
    return fail(job) if job.labels.get("outcome") == "fail" else succeed(job)


async def submitted(shoal: Shoal, *flags: str) -> str:
    done = await shoal(*RUN[:2], "--id-only", *flags, *RUN[2:])
    assert done.code == 0, done.err
    return done.out.strip()


async def test_queue_timeout_fails_a_job_no_executor_takes(
    shoal: Shoal, requester: Requester
) -> None:
    done = await shoal(*RUN[:2], "--id-only", "--wait", "--queue-timeout", "1s", *RUN[2:])
    job_id = done.out.strip()
    assert done.code == 125, "a job that failed without running exits 125"
    assert done.err.strip() == (
        f"JobFailedError: job {job_id} failed (expired): not started within its queue timeout of 1s"
    )


async def test_wait_timeout_exits_124_and_leaves_the_job_queued(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    done = await shoal(*RUN[:2], "--id-only", "--wait", "--wait-timeout", "1s", *RUN[2:])
    job_id = done.out.strip()
    assert done.code == 124
    assert done.err.strip() == (
        f"WaitTimeoutError: gave up waiting after 1s for {job_id} (queued); "
        "the job was left as it is"
    )
    assert requester.store is not None
    assert (await requester.store.describe(job_id))["state"] == JobState.QUEUED
    assert await queue_depth(connection, COMPUTE_QUEUE) == 1


async def test_job_wait_exit_codes(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    good = await submitted(shoal)
    bad = await submitted(shoal, "-l", "outcome=fail")
    async with fake_executor(connection, by_label) as taken:
        waited = await shoal("job", "wait", good)
        assert (waited.code, waited.out) == (0, f"{good} completed\n"), waited.err
        both = await shoal("job", "wait", good, bad)
    assert len(taken) == 2
    assert both.code == 3, "the exit code of the job that did not complete"
    assert both.out == f"{good} completed\n{bad} failed\n"
    assert both.err.strip() == (
        f"JobFailedError: 1 of 2 jobs did not complete: job {bad} failed (exit 3): exit status 3"
    )


async def test_job_wait_timeout_names_the_jobs_left_waiting(
    shoal: Shoal, requester: Requester
) -> None:
    job_id = await submitted(shoal)
    done = await shoal("job", "wait", "--wait-timeout", "500ms", job_id)
    assert done.code == 124
    assert done.err.strip() == (
        f"WaitTimeoutError: gave up waiting after 0.5s for {job_id} (queued); "
        "the job was left as it is"
    )
    bad = await shoal("job", "wait", "--wait-timeout", "soon", job_id)
    assert bad.code == 2
    assert bad.err.startswith("UsageError: --wait-timeout: invalid duration 'soon'")
