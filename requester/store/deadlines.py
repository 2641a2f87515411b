"""Deadlines: when a job's queue and total timeouts run out, and failing the jobs past them.

A job with ``timeouts.queue`` or ``timeouts.total`` gets a row per timeout when it is stored,
due that many seconds after the requester stored it (the clock of the store's writer, not
the client's). :func:`expire_due` fails the jobs whose deadline passed and removes the rows
it handled. Each failure is the usual conditional update (states only move forward), so
when several requesters sweep at once exactly one of them moves a job, and only that one
is told so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import STATE_ORDER, Job, JobState

from . import schema
from .dialect import insert_for
from .writes import advance_state

Kind = Literal["queue", "total"]


@dataclass(frozen=True)
class Expired:
    """A job this call failed: which timeout ran out, in which state it was, and why."""

    job_id: str
    owner: str
    kind: Kind
    state: JobState
    reason: str


def reason(kind: Kind, seconds: float) -> str:
    """The error a job gets when its ``kind`` timeout of ``seconds`` runs out."""
    if kind == "queue":
        return f"expired in the queue: not started within its queue timeout of {seconds:g}s"
    return f"timed out: its total timeout of {seconds:g}s ran out"


async def schedule(conn: AsyncConnection, jobs: Sequence[Job], now: datetime) -> None:
    """Add the deadlines of newly stored ``jobs`` (those without timeouts get none)."""
    rows = []
    for job in jobs:
        timeouts = job.task.timeouts
        for kind, seconds in (("queue", timeouts.queue), ("total", timeouts.total)):
            if seconds is not None:
                due = now + timedelta(seconds=seconds)
                rows.append({"job_id": job.id, "kind": kind, "seconds": seconds, "due_at": due})
    if rows:
        await conn.execute(insert_for(conn)(schema.deadlines).on_conflict_do_nothing(), rows)


async def expire_due(conn: AsyncConnection, now: datetime, limit: int) -> list[Expired]:
    """Fail the jobs of up to ``limit`` deadlines due by ``now``, oldest first, and remove
    those deadlines. A queue deadline fails a job that has not started; a total deadline one
    that has not ended. The jobs this call moved, each once."""
    d, jobs = schema.deadlines, schema.jobs
    rows = (
        await conn.execute(
            select(d.c.job_id, d.c.kind, d.c.seconds, jobs.c.state, jobs.c.owner)
            .join(jobs, jobs.c.id == d.c.job_id)
            .where(d.c.due_at <= now)
            .order_by(d.c.due_at)
            .limit(limit)
        )
    ).all()
    expired: dict[str, Expired] = {}
    for row in rows:
        kind: Kind = "queue" if row.kind == "queue" else "total"
        below = STATE_ORDER[JobState.RUNNING] if kind == "queue" else None
        why = reason(kind, row.seconds)
        moved = await advance_state(
            conn, [row.job_id], JobState.FAILED, error=why, below_rank=below
        )
        if moved and row.job_id not in expired:
            expired[row.job_id] = Expired(row.job_id, row.owner, kind, JobState(row.state), why)
    if rows:
        handled = [(row.job_id, row.kind) for row in rows]
        await conn.execute(delete(d).where(tuple_(d.c.job_id, d.c.kind).in_(handled)))
    return list(expired.values())
