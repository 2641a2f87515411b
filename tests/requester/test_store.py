"""Job store contract: the same tests on SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from pathlib import Path

import pytest

from shoal.errors import NotFoundError
from shoal.model import JobState
from shoal.requester.store import JobStore, NewJob
from shoal.requester.translate import default_registry, translate_job

from .conftest import LIMITS
from .jobs import docker_job, log, python_job, result, state, tar_gz
from .services import postgres_database


def translated(**labels: str) -> NewJob:
    translation = translate_job(python_job(labels=labels), default_registry())
    return NewJob(translation.original, translation.runnable)


async def test_add_jobs_is_idempotent_and_links_the_original(store: JobStore) -> None:
    item = translated()
    first = await store.add_jobs([item])
    again = await store.add_jobs([item, item])
    assert first == again == {item.runnable.id: JobState.PENDING}
    record = await store.describe(item.original.id)
    assert record["id"] == item.runnable.id
    assert record["original_id"] == item.original.id
    assert record["original"]["tasks"][0]["engine"]["type"] == "python"
    assert record["engine_spec"]["type"] == "docker"
    assert record["job_type"] == "python"
    listed = await store.list_jobs(limit=10)
    assert [j["id"] for j in listed] == [item.runnable.id]
    originals = await store.list_jobs(state="translated", limit=10)
    assert [j["id"] for j in originals] == [item.original.id]


async def test_native_job_is_one_row(store: JobStore) -> None:
    job = docker_job()
    assert await store.add_jobs([NewJob(job, job)]) == {job.id: JobState.PENDING}
    assert (await store.describe(job.id))["original"] is None


async def test_states_only_move_forward(store: JobStore) -> None:
    item = translated()
    job_id = item.runnable.id
    await store.add_jobs([item])
    assert await store.mark_queued([job_id]) == [job_id]
    assert await store.mark_queued([job_id]) == []
    await store.record_events([state(job_id, JobState.RUNNING)])
    await store.record_events([state(job_id, JobState.COMPLETED, exit_code=0)])
    await store.record_events([state(job_id, JobState.RUNNING)])
    await store.record_events([state(job_id, JobState.FAILED, exit_code=3, error="late")])
    record = await store.describe(job_id)
    assert record["state"] == "completed"
    assert record["exit_code"] == 0
    [run] = record["executions"]
    assert run["state"] == "completed"
    assert run["exit_code"] == 0
    assert run["started_at"] is not None
    assert run["ended_at"] is not None


async def test_a_round_marks_its_jobs_queued_and_adds_the_next(store: JobStore) -> None:
    first, running, later = translated(), translated(), translated()
    await store.add_jobs([first, running])
    await store.mark_queued([running.runnable.id])
    await store.record_events([state(running.runnable.id, JobState.RUNNING)])
    queued = [first.runnable.id, running.runnable.id]
    assert await store.write_round([later], queued) == {later.runnable.id: JobState.PENDING}
    assert (await store.describe(first.runnable.id))["state"] == "queued"
    assert (await store.describe(running.runnable.id))["state"] == "running"
    assert (await store.describe(later.runnable.id))["state"] == "pending"
    assert await store.write_round([], []) == {}


async def test_concurrent_recorders_cannot_regress(store: JobStore) -> None:
    item = translated()
    job_id = item.runnable.id
    await store.add_jobs([item])
    events = [state(job_id, s) for s in (JobState.COMPLETED, JobState.RUNNING, JobState.QUEUED)]
    await asyncio.gather(*(store.record_events([e]) for e in events * 3))
    assert (await store.describe(job_id))["state"] == "completed"


async def test_stop_only_a_waiting_job(store: JobStore) -> None:
    waiting, running = translated(), translated()
    await store.add_jobs([waiting, running])
    await store.mark_queued([waiting.runnable.id, running.runnable.id])
    await store.record_events([state(running.runnable.id, JobState.RUNNING)])
    assert await store.stop_if_waiting(waiting.runnable.id, "stopped by user")
    assert not await store.stop_if_waiting(running.runnable.id, "stopped by user")
    assert (await store.describe(waiting.runnable.id))["state"] == "stopped"
    assert (await store.describe(running.runnable.id))["state"] == "running"


async def test_logs_in_seq_order_deduplicated_and_bounded(store: JobStore) -> None:
    item = translated()
    job_id = item.runnable.id
    await store.add_jobs([item])
    chunks = [log(job_id, 3, "c\n"), log(job_id, 1, "a\n"), log(job_id, 2, "b\n", "stderr")]
    await store.record_events(chunks)
    await store.record_events([log(job_id, 1, "a\n")])
    logs = await store.logs(job_id)
    assert [(c["seq"], c["data"]) for c in logs["chunks"]] == [(1, "a\n"), (2, "b\n"), (3, "c\n")]
    assert logs["truncated"] == {"stdout": False, "stderr": False}
    # The limit is 64 bytes per stream: a chunk that does not fit is dropped and flagged.
    await store.record_events([log(job_id, 4, "x" * 100)])
    await store.record_events([log(job_id, 5, "d\n")])
    logs = await store.logs(job_id)
    assert [c["seq"] for c in logs["chunks"]] == [1, 2, 3, 5]
    assert logs["truncated"]["stdout"] is True
    assert (await store.describe(job_id))["logs"]["stdout"]["truncated"] is True


async def test_outputs_bounded(store: JobStore) -> None:
    item = translated()
    job_id = item.runnable.id
    await store.add_jobs([item])
    small = tar_gz({"a.txt": b"hello"})
    await store.record_events([result(job_id, {"outputs": small, "big": b"z" * 2000})])
    outs = (await store.outputs(job_id))["outputs"]
    assert base64.b64decode(outs["outputs"]["data"]) == small
    assert outs["outputs"]["truncated"] is False
    assert outs["big"] == {"data": None, "size": 2000, "truncated": True}
    assert (await store.outputs(job_id))["left_out"] == [
        "output 'big' (2.0 KiB) not kept: over the store's limit"
    ]


async def test_results_the_executor_left_out_are_recorded_and_shown(store: JobStore) -> None:
    item = translated()
    job_id = item.runnable.id
    await store.add_jobs([item])
    note = "output 'outputs' (/outputs) left out: more than the 1.0 MiB output limit"
    kept = tar_gz({"a.txt": b"hello"})
    await store.record_events([result(job_id, {"logs": kept}, truncated=True, error=note)])
    got = await store.outputs(job_id)
    assert got["left_out"] == [note]
    assert got["state"] == JobState.PENDING.value
    assert got["outputs"]["logs"]["truncated"] is False, "a result that was kept is whole"
    assert (await store.describe(job_id))["left_out"] == [note]
    await store.record_events([result(job_id, {"outputs": kept}, seq=2)])
    assert (await store.outputs(job_id))["left_out"] == [], "a later whole result clears it"


async def test_limits_the_executor_lowered_are_recorded_with_the_run(store: JobStore) -> None:
    item = translated()
    job_id = item.runnable.id
    await store.add_jobs([item])
    notes = ["cpu 64 → 2 (node maximum)", "execution timeout 100d → 1d (node maximum)"]
    await store.record_events([state(job_id, JobState.RUNNING, seq=1, lowered=notes)])
    running = await store.describe(job_id)
    assert running["lowered"] == notes, "shown while the job runs"
    assert running["executions"][0]["lowered"] == notes
    await store.record_events([state(job_id, JobState.COMPLETED, seq=2, exit_code=0)])
    assert (await store.describe(job_id))["lowered"] == notes, "kept after the end"
    plain = translated()
    await store.add_jobs([plain])
    await store.record_events([state(plain.runnable.id, JobState.RUNNING, seq=1)])
    assert (await store.describe(plain.runnable.id))["lowered"] == []


async def test_list_filters(store: JobStore) -> None:
    red, blue = translated(color="red"), translated(color="blue", size="l")
    await store.add_jobs([red, blue])
    await store.mark_queued([blue.runnable.id])
    by_label = await store.list_jobs(labels={"color": "red"}, limit=10)
    assert [j["id"] for j in by_label] == [red.runnable.id]
    two = await store.list_jobs(labels={"color": "blue", "size": "l"}, limit=10)
    assert [j["id"] for j in two] == [blue.runnable.id]
    assert [j["id"] for j in await store.list_jobs(state="queued", limit=10)] == [blue.runnable.id]
    assert len(await store.list_jobs(limit=1)) == 1


async def test_unknown_job(store: JobStore) -> None:
    with pytest.raises(NotFoundError):
        await store.describe("j-00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotFoundError):
        await store.logs("j-00000000-0000-4000-8000-000000000000")


async def test_a_run_is_fully_recorded_only_when_every_event_is_in(store: JobStore) -> None:
    item = translated()
    job_id = item.runnable.id
    await store.add_jobs([item])
    run = [
        state(job_id, JobState.RUNNING, seq=1),
        log(job_id, 2, "hello\n"),
        result(job_id, {"outputs": tar_gz({"a.txt": b"x"})}, seq=3),
        state(job_id, JobState.COMPLETED, exit_code=0, seq=4),
    ]
    await store.record_events([run[3], run[0]])  # the end overtakes the middle
    assert await store.fully_recorded([job_id]) == []
    assert (await store.describe(job_id))["recorded"] is False
    await store.record_events([run[1]])
    assert await store.fully_recorded([job_id]) == []
    await store.record_events([run[2], run[2]])
    [done] = await store.fully_recorded([job_id, job_id])
    assert (done.job_id, done.kind, done.state, done.exit_code) == (
        job_id,
        "recorded",
        JobState.COMPLETED,
        0,
    )
    assert (await store.describe(job_id))["recorded"] is True


async def test_a_job_stopped_before_it_ran_is_recorded_at_once(store: JobStore) -> None:
    item = translated()
    await store.add_jobs([item])
    assert await store.stop_if_waiting(item.runnable.id, "stopped by user")
    [done] = await store.fully_recorded([item.runnable.id])
    assert done.state is JobState.STOPPED


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_replicas_opening_a_new_store_together_all_start(
    database: str, tmp_path: Path
) -> None:
    """They race to create the schema; the losers find it created and go on."""
    async with contextlib.AsyncExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
        else:
            url = await stack.enter_async_context(postgres_database())
        stores = await asyncio.gather(*(JobStore.open(url, LIMITS) for _ in range(4)))
        item = translated()
        await stores[0].add_jobs([item])
        assert (await stores[3].describe(item.runnable.id))["id"] == item.runnable.id
        for opened in stores:
            await opened.close()


async def test_a_store_from_before_owners_gains_the_column(store: JobStore) -> None:
    from sqlalchemy import inspect, text

    from shoal.requester.store import schema

    async with store._engine.begin() as conn:  # the jobs table as it was before owners
        await conn.execute(text("DROP INDEX ix_jobs_owner_created"))
        await conn.execute(text("ALTER TABLE jobs DROP COLUMN owner"))
        await conn.execute(text("ALTER TABLE jobs DROP COLUMN left_out"))
        await conn.execute(text("ALTER TABLE executions DROP COLUMN lowered"))
        assert await conn.run_sync(schema.upgrade) == [
            "jobs.owner",
            "jobs.left_out",
            "executions.lowered",
        ]
        assert await conn.run_sync(schema.upgrade) == []
        indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("jobs"))
        assert "ix_jobs_owner_created" in {index["name"] for index in indexes}
    item = translated()
    await store.add_jobs([NewJob(item.original, item.runnable.model_copy(update={"owner": "al"}))])
    assert (await store.describe(item.runnable.id))["owner"] == "al"


async def test_runs_belong_to_the_account_that_reported_first(store: JobStore) -> None:
    item = translated()
    await store.add_jobs([item])
    job_id = item.runnable.id
    first = [state(job_id, JobState.RUNNING, seq=1)]
    assert await store.record_events(first, ["exec-a"]) == [True]
    forged = state(job_id, JobState.COMPLETED, exit_code=0, seq=2)
    assert await store.record_events([forged], ["exec-b"]) == [False]
    assert (await store.describe(job_id))["state"] == JobState.RUNNING.value
    assert await store.record_events([forged], ["exec-a"]) == [True]
    assert (await store.describe(job_id))["state"] == JobState.COMPLETED.value
