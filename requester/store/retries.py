"""Retries: a failed run that its job's policy (``Task.retries``) retries goes back to the queue.

When the terminal ``failed`` event of a job's current (claimed) attempt is recorded and its failure
kind is one the job asked to retry (``engine``: the executor or Docker engine failed;
``exit``: the command exited non-zero, only when asked) with attempts left, the run is
recorded as a failed execution but the job does not end: it goes back to ``queued``, its
``retries`` row counts the next attempt and holds when it is due (the policy's back-off), and
its claim is handed to a placeholder attempt whose lease has ended, so the failed attempt's
late events are refused and the next claim takes the run. The sweeper republishes the
compute message of each job that is due (:func:`due`, then :func:`sent`). A job is due only
while no claim holds it (none, or one whose end was handled: ``RELEASED``), and a message sent
is due again some time later (:func:`sent`'s ``again``): if that copy was lost, or skipped by
an executor (it already ran the job, or its claim found a holder that then went away), the
job is sent again until a claim takes it or it ends. Copies are harmless: claims run one.

A compute message dead-lettered after its delivery limit (its executors died or handed it
back each time) is a ``lost`` failure: :func:`retry_lost` requeues its job the same way when
the policy lists ``lost`` (the runs it left unfinished are recorded as failed), and otherwise
says how many attempts were made. Lease takeovers within the delivery limit (the broker
redelivering a dead executor's message) are not counted as attempts.

Each attempt is its own execution: attempt ``n > 1`` of a run on executor ``E`` is keyed
``E#n`` in the tables keyed by executor (:func:`run_key`, :func:`split_key`). The final
failure's error says how many attempts were made. A job without retries is never retried; its
row here only makes a lapsed run's compute message due again (``store.lapses``, attempt kept).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import STATE_ORDER, Job, JobState, Retries
from shoal.wire import JobEvent

from . import schema
from .claims import RELEASED
from .dialect import insert_for

KINDS = {"executor error": "engine", "exit code": "exit"}
"""Failure categories (``shoal.executor.failures``, the error's prefix) → retry kinds."""
ATTEMPT_MARK = "#"
MIN_DELAY = 0.5
"""Seconds a retry waits at the least, whatever the policy: the executor that reported the
failed attempt has let go of the job by then (an executor drops a job ID it still runs)."""


def run_key(executor: str, attempt: int) -> str:
    """The key of attempt ``attempt`` on ``executor`` in the tables keyed by executor."""
    return executor if attempt <= 1 or not executor else f"{executor}{ATTEMPT_MARK}{attempt}"


def split_key(key: str) -> tuple[str, int]:
    """``(executor, attempt)`` of a :func:`run_key`."""
    executor, mark, number = key.rpartition(ATTEMPT_MARK)
    if mark and number.isdigit():
        return executor, int(number)
    return key, 1


def kind_of(error: str | None) -> str | None:
    """The retry kind of a failure's error text, if it has one."""
    if not error:
        return None
    return KINDS.get(error.split(":", 1)[0].strip())


def placeholder(attempt: int) -> str:
    """The claim attempt that holds a job between a failed run and its next claim."""
    return f"retry-{attempt}"


async def current(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, int]:
    """The current attempt number of each of ``job_ids`` that was retried (others are 1)."""
    if not job_ids:
        return {}
    r = schema.retries
    rows = await conn.execute(
        select(r.c.job_id, r.c.attempt).where(r.c.job_id.in_(list(set(job_ids))))
    )
    return {row.job_id: row.attempt for row in rows}


async def policy(conn: AsyncConnection, job_id: str) -> Retries | None:
    """The job's retry policy when it asks for retries."""
    spec = await conn.scalar(select(schema.jobs.c.spec).where(schema.jobs.c.id == job_id))
    if spec is None:
        return None
    retries = Job.model_validate(json.loads(spec)).task.retries
    return retries if retries.attempts > 0 else None


@dataclass(frozen=True)
class Decision:
    """What to do with a ``failed`` event: retry (its next attempt, when due), or end the job
    with ``event`` (its error may now say how many attempts were made)."""

    event: JobEvent
    retry_at: datetime | None = None
    next_attempt: int = 0


def _retry_at(retries: Retries, kind: str | None, attempt: int, now: datetime) -> datetime | None:
    if kind is None or kind not in retries.on or attempt > retries.attempts:
        return None
    delay = max(retries.delay(attempt, random.random()), MIN_DELAY)
    return now + timedelta(seconds=delay)


def counted(error: str, attempt: int) -> str:
    """``error`` of a job's last attempt, saying how many attempts were made."""
    return f"{error} (after {'1 attempt' if attempt == 1 else f'{attempt} attempts'})"


async def decide(conn: AsyncConnection, event: JobEvent, attempt: int, now: datetime) -> Decision:
    """Whether the failed run ``event`` ends (attempt number ``attempt``) is retried."""
    retries = await policy(conn, event.job_id)
    if retries is None:
        return Decision(event)
    retry_at = _retry_at(retries, kind_of(event.error), attempt, now)
    if retry_at is not None:
        return Decision(event, retry_at, attempt + 1)
    error = counted(event.error or "failed", attempt)
    return Decision(event.model_copy(update={"error": error}))


async def retry_lost(conn: AsyncConnection, job_id: str, reason: str, now: datetime) -> str | None:
    """Requeue a job whose compute message was dead-lettered, when its policy retries
    ``lost`` runs and attempts remain: ``None`` then; else the reason to fail it with."""
    retries = await policy(conn, job_id)
    if retries is None:
        return reason
    attempt = (await current(conn, [job_id])).get(job_id, 1)
    retry_at = _retry_at(retries, "lost", attempt, now)
    if retry_at is None or not await requeue(conn, job_id, attempt + 1, retry_at, now):
        return counted(reason, attempt)
    runs = schema.executions
    await conn.execute(
        update(runs)
        .where(runs.c.job_id == job_id, runs.c.state_rank < STATE_ORDER[JobState.COMPLETED])
        .values(
            state=JobState.FAILED.value,
            state_rank=STATE_ORDER[JobState.FAILED],
            error=f"lost: {reason}",
            ended_at=now,
            updated_at=now,
        )
    )
    return None


async def requeue(
    conn: AsyncConnection, job_id: str, attempt: int, due: datetime, now: datetime
) -> bool:
    """Put a running job back in the queue for ``attempt``, due at ``due``; False when it
    ended meanwhile (stopped, timed out)."""
    jobs = schema.jobs
    moved = await conn.execute(
        update(jobs)
        .where(and_(jobs.c.id == job_id, jobs.c.state_rank < STATE_ORDER[JobState.COMPLETED]))
        .values(
            state=JobState.QUEUED.value,
            state_rank=STATE_ORDER[JobState.QUEUED],
            updated_at=now,
        )
    )
    if not moved.rowcount:
        return False
    row = {"job_id": job_id, "attempt": attempt, "due_at": due}
    statement = insert_for(conn)(schema.retries).values(**row)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["job_id"], set_={"attempt": attempt, "due_at": due}
        )
    )
    claims = schema.claims
    await conn.execute(
        update(claims)
        .where(claims.c.job_id == job_id)
        .values(attempt=placeholder(attempt), executor="", expires_at=RELEASED)
    )
    return True


async def due(conn: AsyncConnection, now: datetime, limit: int) -> list[Job]:
    """The jobs not ended and held by no claim whose compute message is due by ``now``
    (oldest first): a next attempt, a run whose lease lapsed (``store.lapses``), or one sent
    before that no claim took since."""
    r, jobs, claims = schema.retries, schema.jobs, schema.claims
    rows = await conn.execute(
        select(jobs.c.spec)
        .join(jobs, jobs.c.id == r.c.job_id)
        .outerjoin(claims, claims.c.job_id == r.c.job_id)
        .where(
            r.c.due_at <= now,
            jobs.c.state_rank < STATE_ORDER[JobState.COMPLETED],
            or_(claims.c.job_id.is_(None), claims.c.expires_at <= RELEASED),
        )
        .order_by(r.c.due_at)
        .limit(limit)
    )
    return [Job.model_validate(json.loads(row.spec)) for row in rows]


async def sent(
    conn: AsyncConnection, job_ids: Sequence[str], now: datetime, again: datetime
) -> None:
    """The compute messages of ``job_ids`` were published: they are due again at ``again``
    unless a claim takes them by then; the due jobs that ended (stopped or expired while
    waiting) are due no more."""
    r, jobs = schema.retries, schema.jobs
    if job_ids:
        await conn.execute(update(r).where(r.c.job_id.in_(list(job_ids))).values(due_at=again))
    left = select(jobs.c.id).where(jobs.c.state_rank >= STATE_ORDER[JobState.COMPLETED])
    await conn.execute(update(r).where(r.c.due_at <= now, r.c.job_id.in_(left)).values(due_at=None))
