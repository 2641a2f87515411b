"""Job store contract for ``job list`` pages, ``job summary`` counts and short ID prefixes
(SQLite and Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shoal.errors import NotFoundError, UsageError
from shoal.model import Job, JobState
from shoal.requester.store import JobFilter, JobStore, NewJob
from shoal.requester.translate import default_registry, translate_job
from shoal.wire import JobEvent

from .jobs import docker_job, python_job, state

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(minutes: int, *, job: Job | None = None, owner: str = "", **labels: str) -> Job:
    """A native job created ``minutes`` after ``T0``."""
    job = job or docker_job(labels=labels)
    return job.model_copy(update={"created_at": T0 + timedelta(minutes=minutes), "owner": owner})


def with_id(job: Job, hex_start: str) -> Job:
    """``job`` with an ID starting ``j-<hex_start>`` (8 hex digits)."""
    return job.model_copy(update={"id": f"j-{hex_start}-0000-4000-8000-000000000000"})


async def add(store: JobStore, *jobs: Job) -> list[str]:
    await store.add_jobs([NewJob(job, job) for job in jobs])
    return [job.id for job in jobs]


async def test_pages_walk_every_job_newest_first_with_counts(store: JobStore) -> None:
    minutes = [0, 1, 2, 2, 2, 3, 4]  # ties are ordered by ID
    ids = await add(store, *(at(m) for m in minutes))
    newest_first = sorted(ids, key=lambda i: (-minutes[ids.index(i)], i))
    seen: list[str] = []
    after = None
    pages = []
    while True:
        page = await store.page(JobFilter(), 3, after)
        pages.append((page["total"], page["skipped"], len(page["jobs"])))
        seen += [job["id"] for job in page["jobs"]]
        after = page["next"]
        if after is None:
            break
        assert after == page["jobs"][-1]["id"]
    assert seen == newest_first
    assert pages == [(7, 0, 3), (7, 3, 3), (7, 6, 1)]
    assert (await store.page(JobFilter(), 7))["next"] is None


async def test_a_page_after_an_unknown_or_unseen_job_is_not_found(store: JobStore) -> None:
    [theirs] = await add(store, at(0, owner="bob"))
    with pytest.raises(NotFoundError):
        await store.page(JobFilter(scope=("alice", frozenset())), 5, theirs)
    with pytest.raises(NotFoundError):
        await store.page(JobFilter(), 5, "j-00000000-0000-4000-8000-000000000000")


async def test_filters_states_since_labels_and_scope(store: JobStore) -> None:
    old, red, blue, other = await add(
        store, at(0), at(10, color="red"), at(20, color="blue"), at(30, owner="bob")
    )
    await store.mark_queued([red, blue])
    await store.record_events([state(blue, JobState.RUNNING)])

    async def ids(**wanted: object) -> list[str]:
        page = await store.page(JobFilter(**wanted), 10)  # type: ignore[arg-type]
        assert page["total"] == len(page["jobs"])
        return [job["id"] for job in page["jobs"]]

    assert await ids(states=("queued", "running")) == [blue, red]
    assert await ids(states=("pending",)) == [other, old]
    assert await ids(since=T0 + timedelta(minutes=10)) == [other, blue, red]
    assert await ids(labels={"color": "red"}) == [red]
    assert await ids(scope=("bob", frozenset())) == [other]
    assert await ids(scope=("alice", frozenset())) == []


async def test_rows_carry_start_and_end_of_their_runs(store: JobStore) -> None:
    [job_id] = await add(store, at(0))
    start = T0 + timedelta(minutes=1)
    end = start + timedelta(seconds=90)
    await store.record_events([state(job_id, JobState.RUNNING, at=start, started_at=start)])
    [running] = (await store.page(JobFilter(), 1))["jobs"]
    assert (running["started_at"], running["ended_at"]) == (start.isoformat(), None)
    await store.record_events([state(job_id, JobState.COMPLETED, exit_code=0, ended_at=end)])
    [ended] = (await store.page(JobFilter(), 1))["jobs"]
    assert (ended["started_at"], ended["ended_at"]) == (start.isoformat(), end.isoformat())


async def test_counts_by_state_and_type_leave_originals_out(store: JobStore) -> None:
    translation = translate_job(python_job(), default_registry())
    await store.add_jobs([NewJob(translation.original, translation.runnable)])
    queued, failed, _ = await add(store, at(0), at(1), at(2, owner="bob"))
    await store.mark_queued([queued, failed, translation.runnable.id])
    await store.record_events([state(failed, JobState.FAILED, exit_code=1)])
    counted = await store.counts(JobFilter())
    assert counted == {
        "total": 4,
        "states": {"failed": 1, "pending": 1, "queued": 2},
        "types": {"docker": {"failed": 1, "pending": 1, "queued": 1}, "python": {"queued": 1}},
    }
    assert (await store.counts(JobFilter(scope=("bob", frozenset()))))["total"] == 1
    assert (await store.counts(JobFilter(since=T0 + timedelta(minutes=5))))["total"] == 1


async def test_a_unique_prefix_names_a_job_of_the_caller(store: JobStore) -> None:
    mine, twin, theirs = await add(
        store,
        with_id(at(0, owner="al"), "abcdef01"),
        with_id(at(1, owner="al"), "abcdef02"),
        with_id(at(2, owner="bob"), "abc99901"),
    )
    al = ("al", frozenset[str]())
    assert await store.match("j-abcdef01", al) == mine
    assert await store.match("ABCDEF02", al) == twin
    assert await store.match(mine, al) == mine
    assert await store.match("abc999", ("bob", frozenset())) == theirs
    with pytest.raises(NotFoundError, match="no job matches 'abc999'"):
        await store.match("abc999", al)  # bob's job is not considered
    with pytest.raises(NotFoundError, match="no job 'j-abc999"):
        await store.match(theirs, al)
    with pytest.raises(UsageError, match="is ambiguous: it matches j-abcdef01-.*, j-abcdef02-"):
        await store.match("abcdef", al)
    assert await store.match("abc999", None) == theirs  # an operator's scope holds every job
    with pytest.raises(UsageError, match="too short: give at least 6 characters after j-"):
        await store.match("j-abcde", al)
    with pytest.raises(NotFoundError, match="no job 'not-a-job'"):
        await store.match("not-a-job", al)


async def test_a_prefix_of_an_original_names_its_runnable_job(store: JobStore) -> None:
    translation = translate_job(python_job(), default_registry())
    await store.add_jobs([NewJob(translation.original, translation.runnable)])
    assert await store.match(translation.original.id[:10]) == translation.runnable.id


async def test_a_job_stopped_before_it_ran_has_no_execution(store: JobStore) -> None:
    [job_id] = await add(store, at(0))
    assert await store.stop_if_waiting(job_id, "stopped by user")
    stop = JobEvent(job_id=job_id, kind="state", state=JobState.STOPPED, error="stopped by user")
    await store.record_events([stop])  # the requester's own event: it names no executor
    record = await store.describe(job_id)
    assert (record["state"], record["executions"]) == ("stopped", [])
