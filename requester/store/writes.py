"""Writes to the job store, each inside a transaction the caller opened.

Every state change is one conditional ``UPDATE … WHERE state_rank < :rank``: whichever
requester records it, a job only moves forward (``shoal.model.STATE_ORDER``), so a late
``running`` after ``completed`` changes nothing and a second terminal state is ignored.
Log chunks and results are keyed so a redelivered event is a no-op; a result event's
note on results the executor left out is kept with the job (``jobs.left_out``), the limits
it lowered with the run (``executions.lowered``, from its ``running`` event). A result
whose name is not one path segment (``shoal.model.checked_output_name``: absolute, ``..``)
is refused (logged, not stored), whatever the event's sender checked.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import STATE_ORDER, TERMINAL_STATES, Job, JobState, checked_output_name
from shoal.wire import JobEvent

from . import schema
from .dialect import bulk_insert, insert_for, insert_rows

log = structlog.get_logger("requester")


@dataclass(frozen=True)
class NewJob:
    """A submission to record: the original and the job executors run (the same if native)."""

    original: Job
    runnable: Job
    idempotency_key: str | None = None

    @functools.cached_property
    def runnable_json(self) -> str:
        """The runnable job as JSON, made once: its stored spec, and the job of its compute
        message (``shoal.wire.compute_body``)."""
        return self.runnable.model_dump_json()


@dataclass(frozen=True)
class Limits:
    """How much of a job's logs (per stream) and outputs (per result) the store keeps."""

    log_bytes: int
    output_bytes: int


LOWERED_CHARS = 4000
"""At most this much of a run's notes on lowered limits is kept."""


def _now() -> datetime:
    return datetime.now(UTC)


_JOB_COLUMNS = (
    "id",
    "name",
    "namespace",
    "owner",
    "job_type",
    "engine",
    "state",
    "state_rank",
    "original_id",
    "translated_id",
    "idempotency_key",
    "spec",
    "labels",
    "exit_code",
    "error",
    "created_at",
    "updated_at",
)
_LABEL_COLUMNS = ("job_id", "key", "value")
_BLOB_COLUMNS = ("job_id", "sha256")
_STATES = select(schema.jobs.c.id, schema.jobs.c.state).where(
    schema.jobs.c.id.in_(bindparam("job_ids", expanding=True))
)


def _job_row(
    job: Job,
    spec: str,
    labels: str,
    state: JobState,
    links: tuple[str | None, str | None],
    job_type: str,
    key: str | None,
    now: datetime,
) -> tuple[Any, ...]:
    """A ``jobs`` row in ``_JOB_COLUMNS`` order; ``links``: its original and translated IDs."""
    original_id, translated_id = links
    return (
        job.id,
        job.name,
        job.namespace,
        job.owner,
        job_type,
        job.engine_type,
        state.value,
        STATE_ORDER[state],
        original_id,
        translated_id,
        key,
        spec,
        labels,
        None,
        None,
        job.created_at,
        now,
    )


def _labels(job: Job) -> str:
    return json.dumps(job.labels, sort_keys=True)


async def insert_jobs(conn: AsyncConnection, items: Sequence[NewJob]) -> dict[str, JobState]:
    """Insert each submission's rows unless present; the runnable jobs' current states.

    Each table's rows go in one ``executemany`` of a statement rendered once
    (``dialect.BulkInsert``); then one query reads the runnable jobs' states (those just
    inserted are ``pending``; a redelivery finds its job as it is)."""
    job_insert = bulk_insert(conn, schema.jobs, _JOB_COLUMNS)
    rows: dict[str, tuple[Any, ...]] = {}
    labels: dict[tuple[str, str], tuple[Any, ...]] = {}
    blobs: dict[tuple[str, str], tuple[Any, ...]] = {}
    now = _now()
    for item in items:
        original, runnable = item.original, item.runnable
        job_type = original.engine_type
        key = item.idempotency_key
        run_labels = _labels(runnable)
        links: tuple[str | None, str | None] = (None, None)
        if runnable.id != original.id:
            links = (original.id, None)
            if original.id not in rows:
                same = original.labels == runnable.labels
                row = _job_row(
                    original,
                    original.model_dump_json(),
                    run_labels if same else _labels(original),
                    JobState.TRANSLATED,
                    (None, runnable.id),
                    job_type,
                    key,
                    now,
                )
                rows[original.id] = job_insert.row(row)
        if runnable.id not in rows:
            row = _job_row(
                runnable,
                item.runnable_json,
                run_labels,
                JobState.PENDING,
                links,
                job_type,
                key,
                now,
            )
            rows[runnable.id] = job_insert.row(row)
        for name, value in runnable.labels.items():
            labels[(runnable.id, name)] = (runnable.id, name, value)
        for entry in runnable.task.inputs:
            if entry.source.type == "blob":
                sha256 = str(entry.source.params["sha256"])
                blobs[(runnable.id, sha256)] = (runnable.id, sha256)
    await insert_rows(conn, job_insert, list(rows.values()))
    label_insert = bulk_insert(conn, schema.job_labels, _LABEL_COLUMNS)
    await insert_rows(conn, label_insert, list(labels.values()))
    blob_insert = bulk_insert(conn, schema.job_blobs, _BLOB_COLUMNS)
    await insert_rows(conn, blob_insert, list(blobs.values()))
    states = {item.runnable.id: JobState.PENDING for item in items}
    found = await conn.execute(_STATES, {"job_ids": list(states)})
    states.update({row.id: JobState(row.state) for row in found})
    return states


async def advance_state(
    conn: AsyncConnection,
    job_ids: Sequence[str],
    state: JobState,
    *,
    exit_code: int | None = None,
    error: str | None = None,
    below_rank: int | None = None,
) -> list[str]:
    """Move jobs to ``state`` when they are ranked lower (or below ``below_rank``).

    Returns the IDs that moved. One statement, so concurrent recorders cannot regress a job.
    """
    if not job_ids:
        return []
    rank = STATE_ORDER[state]
    limit = rank if below_rank is None else min(rank, below_rank)
    jobs = schema.jobs
    values: dict[str, Any] = {"state": state.value, "state_rank": rank, "updated_at": _now()}
    if exit_code is not None:
        values["exit_code"] = exit_code
    if error is not None:
        values["error"] = error
    result = await conn.execute(
        update(jobs)
        .where(and_(jobs.c.id.in_(list(job_ids)), jobs.c.state_rank < limit))
        .values(**values)
        .returning(jobs.c.id)
    )
    return [row.id for row in result]


_QUEUED = STATE_ORDER[JobState.QUEUED]
_MARK_QUEUED = (
    update(schema.jobs)
    .where(
        schema.jobs.c.id.in_(bindparam("job_ids", expanding=True)),
        schema.jobs.c.state_rank < _QUEUED,
    )
    .values(state=JobState.QUEUED.value, state_rank=_QUEUED, updated_at=bindparam("now"))
)
"""``advance_state(…, QUEUED)`` as one statement built once, without ``RETURNING``: the
submission pipeline marks every confirmed job of a round with it."""


async def mark_queued(conn: AsyncConnection, job_ids: Sequence[str]) -> None:
    """Move the pending ``job_ids`` to ``queued`` (those further on stay)."""
    if job_ids:
        await conn.execute(_MARK_QUEUED, {"job_ids": list(job_ids), "now": _now()})


async def claim_run(conn: AsyncConnection, event: JobEvent, account: str) -> bool:
    """Whether ``account`` runs the execution ``event`` belongs to: the first account whose
    event for a (job, executor) run is recorded owns that run."""
    executor = event.executor or ""
    accounts = schema.run_accounts
    await conn.execute(
        insert_for(conn)(accounts)
        .values(job_id=event.job_id, executor=executor, account=account)
        .on_conflict_do_nothing()
    )
    owner = await conn.scalar(
        select(accounts.c.account).where(
            accounts.c.job_id == event.job_id, accounts.c.executor == executor
        )
    )
    return owner == account


async def record_event(
    conn: AsyncConnection, event: JobEvent, limits: Limits, *, advance_job: bool = True
) -> None:
    """Write one job event: a state change, a log chunk or results, and its mark. Without
    ``advance_job`` a state event moves only its execution (a run that will be retried)."""
    if event.kind == "state":
        await _record_state(conn, event, advance_job=advance_job)
    elif event.kind == "log":
        await _record_log(conn, event, limits.log_bytes)
    elif event.kind == "result":
        await _record_result(conn, event, limits.output_bytes)
    else:
        return
    await _mark(conn, event)


async def _mark(conn: AsyncConnection, event: JobEvent) -> None:
    """Note that ``event`` is recorded; a terminal state also notes its run's last seq."""
    if event.seq <= 0:
        return
    insert = insert_for(conn)
    executor = event.executor or ""
    await conn.execute(
        insert(schema.event_marks)
        .values(job_id=event.job_id, executor=executor, seq=event.seq)
        .on_conflict_do_nothing()
    )
    if event.kind == "state" and event.state in TERMINAL_STATES:
        await conn.execute(
            insert(schema.run_ends)
            .values(job_id=event.job_id, executor=executor, final_seq=event.seq)
            .on_conflict_do_nothing()
        )


async def _record_state(conn: AsyncConnection, event: JobEvent, *, advance_job: bool) -> None:
    if event.state is None or event.state in (JobState.PENDING, JobState.TRANSLATED):
        return
    if advance_job:
        await advance_state(
            conn, [event.job_id], event.state, exit_code=event.exit_code, error=event.error
        )
    executor = event.executor
    if not executor:  # the requester's verdict (a stop, a deadline): the job's, not a run's
        return
    runs = schema.executions
    await conn.execute(
        insert_for(conn)(runs)
        .values(
            job_id=event.job_id,
            executor=executor,
            state=JobState.PENDING.value,
            state_rank=STATE_ORDER[JobState.PENDING],
            updated_at=_now(),
        )
        .on_conflict_do_nothing()
    )
    this_run = and_(runs.c.job_id == event.job_id, runs.c.executor == executor)
    started = event.started_at or (event.at if event.state is JobState.RUNNING else None)
    if started is not None:
        await conn.execute(
            update(runs).where(this_run, runs.c.started_at.is_(None)).values(started_at=started)
        )
    if event.lowered:
        lowered = "\n".join(event.lowered)[:LOWERED_CHARS]
        await conn.execute(update(runs).where(this_run).values(lowered=lowered))
    rank = STATE_ORDER[event.state]
    values: dict[str, Any] = {"state": event.state.value, "state_rank": rank, "updated_at": _now()}
    if rank == STATE_ORDER[JobState.COMPLETED]:
        values |= {
            "exit_code": event.exit_code,
            "error": event.error,
            "ended_at": event.ended_at or event.at,
        }
    await conn.execute(update(runs).where(this_run, runs.c.state_rank < rank).values(**values))


async def _record_log(conn: AsyncConnection, event: JobEvent, limit: int) -> None:
    stream = event.stream or "stdout"
    insert = insert_for(conn)
    inserted = await conn.execute(
        insert(schema.log_chunks)
        .values(
            job_id=event.job_id,
            executor=event.executor or "",
            seq=event.seq,
            stream=stream,
            data=event.data,
            at=event.at,
        )
        .on_conflict_do_nothing()
    )
    if inserted.rowcount == 0:
        return
    streams = schema.log_streams
    await conn.execute(
        insert(streams)
        .values(job_id=event.job_id, stream=stream, bytes=0, truncated=False)
        .on_conflict_do_nothing()
    )
    this_stream = and_(streams.c.job_id == event.job_id, streams.c.stream == stream)
    size = len(event.data.encode())
    values: dict[str, Any] = {"bytes": streams.c.bytes + size}
    if event.truncated:
        values["truncated"] = True
    kept = await conn.execute(
        update(streams).where(this_stream, streams.c.bytes + size <= limit).values(**values)
    )
    if kept.rowcount == 0:
        chunks = schema.log_chunks
        await conn.execute(
            chunks.delete().where(
                chunks.c.job_id == event.job_id,
                chunks.c.executor == (event.executor or ""),
                chunks.c.seq == event.seq,
            )
        )
        await conn.execute(update(streams).where(this_stream).values(truncated=True))


async def _record_result(conn: AsyncConnection, event: JobEvent, limit: int) -> None:
    """Store each result (one over the store's ``limit`` as its size only) and the executor's
    note on the results it left out (``jobs.left_out``; cleared by a later run's result)."""
    insert = insert_for(conn)
    jobs = schema.jobs
    left_out = (event.error or "results left out over the executor's output limit")[:4000]
    await conn.execute(
        update(jobs)
        .where(jobs.c.id == event.job_id)
        .values(left_out=left_out if event.truncated else None)
    )
    for name, encoded in event.outputs.items():
        try:
            checked_output_name(name)
        except ValueError as error:
            log.warning("result.name_refused", job_id=event.job_id, name=name, error=str(error))
            continue
        try:
            data: bytes | None = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            data = None
        size = len(data) if data is not None else 0
        truncated = data is None or size > limit
        row = {
            "job_id": event.job_id,
            "name": name,
            "data": None if size > limit else data,
            "size": size,
            "truncated": truncated,
            "executor": event.executor or "",
            "at": event.at,
        }
        statement = insert(schema.outputs).values(**row)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["job_id", "name"],
                set_={k: statement.excluded[k] for k in row if k not in ("job_id", "name")},
            )
        )
