"""Retries in the store (``shoal.requester.store.retries``), on SQLite and on Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shoal.model import Job, JobState, parse_job
from shoal.requester.store import JobStore, NewJob
from shoal.requester.store.retries import kind_of, run_key, split_key
from shoal.wire import ClaimItem

from .jobs import docker_job, log, state

ENGINE_ERROR = "executor error: cannot start the container: engine down"
AGAIN = 120.0
"""Seconds after which a message sent is due again while no claim holds its job."""


def retried_job(**retries: Any) -> Job:
    """A native docker job with a retry policy (no back-off to speak of)."""
    policy = {"backoff": "1ms", "backoff_max": "1ms", **retries}
    return parse_job(
        {
            "name": "retried",
            "tasks": [
                {"engine": {"type": "docker", "params": {"image": "busybox"}}, "retries": policy}
            ],
        }
    )


async def queued(store: JobStore, job: Job) -> str:
    await store.add_jobs([NewJob(job, job)])
    await store.mark_queued([job.id])
    return job.id


async def claim(store: JobStore, job_id: str, attempt: str) -> str:
    item = ClaimItem(job_id=job_id, attempt=attempt)
    return (await store.claim_runs("claim", "ex-1", [item], 30.0))[0].verdict


async def run_and_fail(
    store: JobStore, job_id: str, attempt: str, error: str, **fields: Any
) -> None:
    assert await claim(store, job_id, attempt) == "granted"
    await store.record_events(
        [
            state(job_id, JobState.RUNNING, attempt=attempt, seq=1),
            state(job_id, JobState.FAILED, attempt=attempt, seq=2, error=error, **fields),
        ]
    )


async def due_ids(store: JobStore) -> list[str]:
    """The jobs due once every back-off has passed."""
    later = datetime.now(UTC) + timedelta(minutes=1)
    return [job.id for job in await store.due_retries(now=later)]


def test_failure_kinds_and_run_keys() -> None:
    assert kind_of(ENGINE_ERROR) == "engine"
    assert kind_of("exit code: the command exited with 3") == "exit"
    assert kind_of("timeout: execution exceeded 5s") is None
    assert kind_of(None) is None
    assert run_key("ex-1", 1) == "ex-1"
    assert split_key(run_key("ex-1", 3)) == ("ex-1", 3)
    assert split_key("ex-1") == ("ex-1", 1)
    assert run_key("", 2) == ""


async def test_an_engine_failure_is_retried_and_each_attempt_is_an_execution(
    store: JobStore,
) -> None:
    job_id = await queued(store, retried_job(attempts=2))
    await run_and_fail(store, job_id, "a1", ENGINE_ERROR)
    record = await store.describe(job_id)
    assert record["state"] == JobState.QUEUED
    assert await due_ids(store) == [job_id]
    await store.retries_sent([job_id], AGAIN)
    assert await due_ids(store) == []
    # the failed attempt's late events are refused; the next claim takes the run
    assert await store.record_events([log(job_id, 3, "late", attempt="a1")]) == [False]
    assert await claim(store, job_id, "a2") == "granted"
    await store.record_events(
        [
            state(job_id, JobState.RUNNING, attempt="a2", seq=1),
            log(job_id, 2, "second", attempt="a2"),
            state(job_id, JobState.COMPLETED, attempt="a2", seq=3, exit_code=0),
        ]
    )
    record = await store.describe(job_id)
    assert record["state"] == JobState.COMPLETED
    runs = [(r["executor"], r["attempt"], r["state"], r["error"]) for r in record["executions"]]
    assert runs == [
        ("ex-1", 1, JobState.FAILED, ENGINE_ERROR),
        ("ex-1", 2, JobState.COMPLETED, None),
    ]
    assert record["recorded"]
    assert [c["data"] for c in (await store.logs(job_id))["chunks"]] == ["second"]


async def test_a_non_zero_exit_is_retried_only_when_asked(store: JobStore) -> None:
    plain = await queued(store, retried_job(attempts=2))
    await run_and_fail(store, plain, "a1", "exit code: exited with 3", exit_code=3)
    record = await store.describe(plain)
    assert record["state"] == JobState.FAILED
    assert record["error"] == "exit code: exited with 3 (after 1 attempt)"
    asked = await queued(store, retried_job(attempts=2, on=["exit"]))
    await run_and_fail(store, asked, "b1", "exit code: exited with 3", exit_code=3)
    assert (await store.describe(asked))["state"] == JobState.QUEUED


async def test_exhausted_attempts_fail_with_the_count(store: JobStore) -> None:
    job_id = await queued(store, retried_job(attempts=1))
    await run_and_fail(store, job_id, "a1", ENGINE_ERROR)
    assert await due_ids(store) == [job_id]
    await store.retries_sent([job_id], AGAIN)
    await run_and_fail(store, job_id, "a2", ENGINE_ERROR)
    record = await store.describe(job_id)
    assert record["state"] == JobState.FAILED
    assert record["error"] == f"{ENGINE_ERROR} (after 2 attempts)"
    assert [r["state"] for r in record["executions"]] == [JobState.FAILED, JobState.FAILED]
    assert await due_ids(store) == []


async def test_a_job_without_retries_fails_as_before(store: JobStore) -> None:
    job_id = await queued(store, docker_job())
    await run_and_fail(store, job_id, "a1", ENGINE_ERROR)
    record = await store.describe(job_id)
    assert (record["state"], record["error"]) == (JobState.FAILED, ENGINE_ERROR)
    assert await due_ids(store) == []


async def test_a_job_stopped_while_waiting_for_its_retry_is_not_republished(
    store: JobStore,
) -> None:
    job_id = await queued(store, retried_job(attempts=3))
    await run_and_fail(store, job_id, "a1", ENGINE_ERROR)
    assert await store.stop_if_waiting(job_id, "stopped by user")
    assert await due_ids(store) == []
    await store.retries_sent([], AGAIN)
    assert await claim(store, job_id, "a2") == "stopped"


async def test_a_lost_run_is_retried_when_the_policy_says_lost(store: JobStore) -> None:
    job_id = await queued(store, retried_job(attempts=1))
    assert await claim(store, job_id, "a1") == "granted"
    await store.record_events([state(job_id, JobState.RUNNING, attempt="a1", seq=1)])
    assert await store.retry_lost(job_id, "delivery limit reached") is None
    record = await store.describe(job_id)
    assert record["state"] == JobState.QUEUED
    assert [(r["state"], r["error"]) for r in record["executions"]] == [
        (JobState.FAILED, "lost: delivery limit reached")
    ]
    assert await due_ids(store) == [job_id]
    assert await claim(store, job_id, "a2") == "granted"
    reason = await store.retry_lost(job_id, "delivery limit reached")
    assert reason == "delivery limit reached (after 2 attempts)"


async def test_a_lost_run_is_not_retried_unless_listed(store: JobStore) -> None:
    exits_only = await queued(store, retried_job(attempts=2, on=["exit"]))
    assert await store.retry_lost(exits_only, "gone") == "gone (after 1 attempt)"
    plain = await queued(store, docker_job())
    assert await store.retry_lost(plain, "gone") == "gone"
    assert (await store.describe(plain))["state"] == JobState.QUEUED


async def test_an_unclaimed_run_is_not_retried(store: JobStore) -> None:
    """Without claims a redelivered ``failed`` event cannot be told from a new attempt's."""
    job_id = await queued(store, retried_job(attempts=2))
    await store.record_events([state(job_id, JobState.FAILED, seq=1, error=ENGINE_ERROR)])
    record = await store.describe(job_id)
    assert (record["state"], record["error"]) == (JobState.FAILED, ENGINE_ERROR)
