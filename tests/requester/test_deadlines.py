"""Deadlines in the job store (SQLite and Postgres): queue and total timeouts fail jobs once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from shoal.model import Job, JobState
from shoal.requester.store import JobStore, NewJob
from shoal.requester.store.deadlines import Expired

from .jobs import state, timed_job


def timed(**timeouts: float) -> NewJob:
    job = timed_job(**timeouts)
    return NewJob(job, job)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def queued(store: JobStore, item: NewJob) -> Job:
    await store.add_jobs([item])
    await store.mark_queued([item.runnable.id])
    return item.runnable


async def test_a_queued_job_expires_once_its_queue_timeout_passed(store: JobStore) -> None:
    job = await queued(store, timed(queue=30))
    assert await store.expire_due(later(20)) == []
    [expired] = await store.expire_due(later(31))
    assert expired == Expired(
        job.id,
        job.owner,
        "queue",
        JobState.QUEUED,
        "expired in the queue: not started within its queue timeout of 30s",
    )
    record = await store.describe(job.id)
    assert record["state"] == JobState.FAILED
    assert record["error"] == expired.reason
    assert await store.expire_due(later(60)) == []  # handled deadlines are removed


async def test_a_started_job_outlives_its_queue_timeout(store: JobStore) -> None:
    job = await queued(store, timed(queue=5))
    await store.record_events([state(job.id, JobState.RUNNING)])
    assert await store.expire_due(later(10)) == []
    assert (await store.describe(job.id))["state"] == JobState.RUNNING


async def test_a_running_job_fails_at_its_total_timeout(store: JobStore) -> None:
    job = await queued(store, timed(queue=5, total=60))
    await store.record_events([state(job.id, JobState.RUNNING)])
    [expired] = await store.expire_due(later(61))
    assert (expired.kind, expired.state) == ("total", JobState.RUNNING)
    assert expired.reason == "timed out: its total timeout of 60s ran out"
    assert (await store.describe(job.id))["state"] == JobState.FAILED


async def test_an_ended_job_is_left_as_it_is(store: JobStore) -> None:
    job = await queued(store, timed(total=5))
    await store.record_events([state(job.id, JobState.COMPLETED, exit_code=0)])
    assert await store.expire_due(later(10)) == []
    assert (await store.describe(job.id))["state"] == JobState.COMPLETED


async def test_concurrent_sweeps_fail_each_job_once(store: JobStore) -> None:
    jobs = [await queued(store, timed(queue=1)) for _ in range(20)]
    failed: list[str] = []
    for _ in range(len(jobs)):  # each round fails at least one job
        rounds = await asyncio.gather(*(store.expire_due(later(5), limit=7) for _ in range(4)))
        failed += [e.job_id for expired in rounds for e in expired]
        if len(failed) >= len(jobs):
            break
    assert sorted(failed) == sorted(job.id for job in jobs)


async def test_a_redelivered_submission_keeps_its_first_deadline(store: JobStore) -> None:
    item = timed(queue=30)
    await store.add_jobs([item])
    await store.add_jobs([item])
    [expired] = await store.expire_due(later(31))
    assert (expired.job_id, expired.state) == (item.runnable.id, JobState.PENDING)
