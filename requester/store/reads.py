"""Reads from the job store, as JSON-ready dicts (what the ``shoal.api`` RPC returns)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import STATE_ORDER, JobState
from shoal.outcomes import explain
from shoal.units import format_bytes

from . import schema
from .retries import split_key


def iso(value: datetime | None) -> str | None:
    """``value`` as ISO 8601 with its UTC zone, or ``None``."""
    value = schema.utc(value)
    return value.isoformat() if value is not None else None


async def job_row(conn: AsyncConnection, job_id: str) -> Row[Any] | None:
    """The job's row, or ``None``."""
    result = await conn.execute(select(schema.jobs).where(schema.jobs.c.id == job_id))
    return result.first()


async def resolve(conn: AsyncConnection, job_id: str) -> Row[Any] | None:
    """The job executors run for ``job_id``: a translated original leads to its runnable job."""
    row = await job_row(conn, job_id)
    if row is not None and row.translated_id:
        return await job_row(conn, row.translated_id) or row
    return row


async def specs(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, str]:
    """The stored spec (JSON) of each of ``job_ids`` that is known."""
    if not job_ids:
        return {}
    jobs = schema.jobs
    result = await conn.execute(select(jobs.c.id, jobs.c.spec).where(jobs.c.id.in_(job_ids)))
    return {row.id: row.spec for row in result}


def summary(row: Row[Any]) -> dict[str, Any]:
    """The short form of a job, one line of ``job list``."""
    return {
        "id": row.id,
        "name": row.name,
        "owner": row.owner,
        "namespace": row.namespace,
        "job_type": row.job_type,
        "engine": row.engine,
        "state": row.state,
        "labels": json.loads(row.labels),
        "original_id": row.original_id,
        "translated_id": row.translated_id,
        "exit_code": row.exit_code,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


TERMINAL_RANK = STATE_ORDER[JobState.COMPLETED]


async def fully_recorded(
    conn: AsyncConnection, job_ids: list[str]
) -> Sequence[Row[Any, Any, Any, Any]]:
    """Rows (id, owner, state, exit_code) of the jobs among ``job_ids`` that are terminal and whose
    ended runs have every event recorded: what ``--wait`` may safely report on."""
    if not job_ids:
        return []
    jobs, ends, marks = schema.jobs, schema.run_ends, schema.event_marks
    counted = (
        select(func.count())
        .where(
            marks.c.job_id == ends.c.job_id,
            marks.c.executor == ends.c.executor,
            marks.c.seq <= ends.c.final_seq,
        )
        .scalar_subquery()
    )
    incomplete = select(ends.c.job_id).where(ends.c.job_id.in_(job_ids), counted < ends.c.final_seq)
    result = await conn.execute(
        select(jobs.c.id, jobs.c.owner, jobs.c.state, jobs.c.exit_code).where(
            jobs.c.id.in_(job_ids),
            jobs.c.state_rank == TERMINAL_RANK,
            jobs.c.id.not_in(incomplete),
        )
    )
    return result.all()


async def describe(conn: AsyncConnection, row: Row[Any]) -> dict[str, Any]:
    """The whole record: spec, engine, the original spec, executions, log and output sizes,
    what was left out, and the limits the last run's executor ``lowered``."""
    record = summary(row)
    spec = json.loads(row.spec)
    record["error"] = row.error
    record["outcome"] = explain(row.state, row.error).as_dict()
    record["spec"] = spec
    record["engine_spec"] = spec["tasks"][0]["engine"]
    record["original"] = None
    if row.original_id:
        original = await job_row(conn, row.original_id)
        record["original"] = json.loads(original.spec) if original is not None else None
    record["executions"] = await executions(conn, row.id)
    streams = schema.log_streams
    record["logs"] = {
        s.stream: {"bytes": s.bytes, "truncated": s.truncated}
        for s in await conn.execute(select(streams).where(streams.c.job_id == row.id))
    }
    outs = schema.outputs
    record["outputs"] = {
        o.name: {"size": o.size, "truncated": o.truncated}
        for o in await conn.execute(
            select(outs.c.name, outs.c.size, outs.c.truncated).where(outs.c.job_id == row.id)
        )
    }
    record["left_out"] = left_out(row, record["outputs"])
    record["lowered"] = record["executions"][-1]["lowered"] if record["executions"] else []
    record["recorded"] = bool(await fully_recorded(conn, [row.id]))
    return record


def left_out(row: Row[Any], outputs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What of the job's results is missing: the executor's note (over its output limit),
    and each result the store did not keep (over the store's limit)."""
    notes = [row.left_out] if row.left_out else []
    notes += [
        f"output {name!r} ({format_bytes(item['size'])}) not kept: over the store's limit"
        for name, item in sorted(outputs.items())
        if item["truncated"]
    ]
    return notes


async def executions(conn: AsyncConnection, job_id: str) -> list[dict[str, Any]]:
    """The job's runs, one per attempt (``store.retries``), in attempt then start order.
    Rows without an executor (the requester's own verdicts, which earlier versions recorded
    as runs) are not runs and are left out."""
    runs = schema.executions
    found = []
    query = select(runs).where(runs.c.job_id == job_id, runs.c.executor != "")
    for run in await conn.execute(query):
        executor, attempt = split_key(run.executor)
        found.append(
            {
                "executor": executor or None,
                "attempt": attempt,
                "state": run.state,
                "exit_code": run.exit_code,
                "error": run.error,
                "started_at": iso(run.started_at),
                "ended_at": iso(run.ended_at),
                "lowered": run.lowered.splitlines() if run.lowered else [],
            }
        )
    return sorted(found, key=lambda r: (r["attempt"], r["started_at"] or "", r["executor"] or ""))


async def last_error(conn: AsyncConnection, job_id: str, ignoring: str = "") -> str | None:
    """The error of the job's last run (:func:`executions` order) that failed with one,
    leaving out errors that start with ``ignoring`` (when given)."""
    errors = [
        str(run["error"])
        for run in await executions(conn, job_id)
        if run["error"] and not (ignoring and str(run["error"]).startswith(ignoring))
    ]
    return errors[-1] if errors else None


async def logs(conn: AsyncConnection, job_id: str) -> dict[str, Any]:
    """Every kept log chunk in order, and whether each stream was truncated."""
    chunks = schema.log_chunks
    streams = schema.log_streams
    rows = await conn.execute(
        select(chunks).where(chunks.c.job_id == job_id).order_by(chunks.c.seq, chunks.c.executor)
    )
    flags = await conn.execute(select(streams).where(streams.c.job_id == job_id))
    return {
        "job_id": job_id,
        "chunks": [
            {"seq": c.seq, "stream": c.stream, "data": c.data, "executor": c.executor or None}
            for c in rows
        ],
        "truncated": {s.stream: s.truncated for s in flags},
    }


async def outputs(conn: AsyncConnection, row: Row[Any]) -> dict[str, Any]:
    """The job's state, each result as base64 tar.gz (``None`` when it was over the limit),
    and what was left out (:func:`left_out`)."""
    outs = schema.outputs
    rows = await conn.execute(select(outs).where(outs.c.job_id == row.id).order_by(outs.c.name))
    found = {
        o.name: {
            "data": base64.b64encode(o.data).decode() if o.data is not None else None,
            "size": o.size,
            "truncated": o.truncated,
        }
        for o in rows
    }
    return {
        "job_id": row.id,
        "state": row.state,
        "outputs": found,
        "left_out": left_out(row, found),
    }
