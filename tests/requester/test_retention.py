"""Retention (SQLite and Postgres): jobs that ended long ago are removed, history and all."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from shoal.blobs import blob_source, digest
from shoal.errors import NotFoundError
from shoal.model import JobState, parse_job
from shoal.requester.store import JobStore, NewJob, schema
from shoal.requester.translate import default_registry, translate_job

from .jobs import log, python_job, result, state, tar_gz


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def translated(store: JobStore, **labels: str) -> NewJob:
    translation = translate_job(python_job(labels=labels), default_registry())
    item = NewJob(translation.original, translation.runnable)
    await store.add_jobs([item])
    await store.mark_queued([item.runnable.id])
    return item


async def rows_of(store: JobStore, job_ids: list[str]) -> int:
    """Rows left, in every table keyed by a job ID, for ``job_ids``."""
    total = 0
    async with store._engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            key = table.c.get("job_id", table.c.get("id"))
            if key is None:
                continue
            count = await conn.scalar(select(func.count()).where(key.in_(job_ids)))
            total += int(count or 0)
    return total


async def test_an_ended_job_is_pruned_with_its_original_logs_and_outputs(
    store: JobStore,
) -> None:
    done = await translated(store, team="a")
    run = done.runnable.id
    await store.record_events(
        [
            state(run, JobState.RUNNING),
            log(run, 1, "hello\n"),
            result(run, {"outputs": tar_gz({"a.txt": b"a"})}),
            state(run, JobState.COMPLETED, exit_code=0),
        ]
    )
    assert await store.prune_ended(later(-60)) == []  # ended just now: kept
    assert await store.prune_ended(later(60)) == [run]
    for job_id in (run, done.original.id):
        with pytest.raises(NotFoundError):
            await store.describe(job_id)
    assert await rows_of(store, [run, done.original.id]) == 0


async def test_waiting_and_running_jobs_and_their_originals_are_kept(store: JobStore) -> None:
    waiting = await translated(store)
    running = await translated(store)
    await store.record_events([state(running.runnable.id, JobState.RUNNING)])
    assert await store.prune_ended(later(3600)) == []
    for item in (waiting, running):
        assert (await store.describe(item.original.id))["id"] == item.runnable.id


async def test_pruning_goes_a_batch_at_a_time_and_leaves_the_rest(store: JobStore) -> None:
    items = [await translated(store) for _ in range(5)]
    await store.record_events(
        [state(item.runnable.id, JobState.FAILED, exit_code=1) for item in items[:4]]
    )
    first = await store.prune_ended(later(60), limit=3)
    second = await store.prune_ended(later(60), limit=3)
    assert len(first) == 3
    assert len(second) == 1
    assert sorted(first + second) == sorted(item.runnable.id for item in items[:4])
    assert (await store.describe(items[4].runnable.id))["state"] == JobState.QUEUED


def job_naming(sha256: str, size: int) -> NewJob:
    job = parse_job(
        {
            "name": "shared-code",
            "tasks": [
                {
                    "engine": {"type": "docker", "params": {"image": "busybox"}},
                    "inputs": [{"source": blob_source("dir", sha256, size), "target": "/code"}],
                }
            ],
        }
    )
    return NewJob(job, job)


async def test_a_blob_goes_once_no_job_kept_names_it(store: JobStore) -> None:
    shared, alone = b"shared code", b"one job's code"
    for data in (shared, alone):
        await store.blobs().put(data)
    first, second, third = (
        job_naming(digest(shared), len(shared)),
        job_naming(digest(shared), len(shared)),
        job_naming(digest(alone), len(alone)),
    )
    await store.add_jobs([first, second, third])
    await store.record_events(
        [state(item.runnable.id, JobState.COMPLETED, exit_code=0) for item in (first, third)]
    )
    assert sorted(await store.prune_ended(later(60))) == sorted(
        [first.runnable.id, third.runnable.id]
    )
    assert await store.blobs().missing([digest(shared), digest(alone)]) == [digest(alone)]
    await store.record_events([state(second.runnable.id, JobState.FAILED, exit_code=1)])
    assert await store.prune_ended(later(60)) == [second.runnable.id]
    assert await store.blobs().count() == 0


async def test_two_requesters_pruning_at_once_remove_and_report_each_job_once(
    store: JobStore,
) -> None:
    items = [await translated(store) for _ in range(20)]
    runs = [item.runnable.id for item in items]
    await store.record_events([state(run, JobState.COMPLETED, exit_code=0) for run in runs])
    url = store._engine.url.render_as_string(hide_password=False)
    other = await JobStore.open(url, store.limits)  # a second requester's, on the same store
    try:
        first, second = await asyncio.gather(
            store.prune_ended(later(60)), other.prune_ended(later(60))
        )
    finally:
        await other.close()
    assert sorted(first + second) == sorted(runs)
    assert await rows_of(store, [*runs, *(item.original.id for item in items)]) == 0
