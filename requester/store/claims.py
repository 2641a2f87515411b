"""Execution claims: which attempt may run a job, as a lease (``claims`` table).

One row per job that was ever claimed or stopped before it ran. The first claim inserts it
(``INSERT … ON CONFLICT DO NOTHING``), so of two executors racing for a job exactly one wins,
on SQLite and on Postgres alike. The row holds the winning ``attempt``, its executor and the
lease end; renewals push the end forward (a lapsed lease too, while no other attempt took it).
A run handed back (:func:`release`, a retry's placeholder) names no executor and is taken
over by the next claim. A run whose lease is live, or lapsed, and whose executor is another
one is answered ``claimed`` naming that holder: ``shoal.requester.claims`` asks the broker
whether it is gone, and whether a lapsed lease's holder had the time to renew (a lease also
lapses while no requester answers renewals); only then is it taken over, by a conditional
``UPDATE … WHERE attempt = <old>``, so two takers cannot both win either. A stop before any
run inserts (or takes over a lapsed lease as) ``STOP_ATTEMPT``: every later claim answers
``stopped``. Events of an attempt that no longer holds its row are refused
(:func:`holders`). A lease that ended while its job did not has its compute message resent
by the sweeper (``store.lapses``); ``RELEASED`` marks a lease whose end was handled so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import TERMINAL_STATES, JobState
from shoal.wire import Verdict

from . import schema
from .dialect import insert_for

STOP_ATTEMPT = "stopped"
"""The attempt of a job stopped before any run held it."""
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
RELEASED = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Claimed:
    """The store's answer to one claim; ``holder`` names the executor holding a ``claimed``
    job that has not ended (the requester checks whether it may take the run from it), and
    ``lapsed`` says whether that holder's lease ran out."""

    verdict: Verdict
    holder: str | None = None
    holder_attempt: str | None = None
    lapsed: bool = False


def _ends(now: datetime, lease: float) -> datetime:
    return now + timedelta(seconds=lease)


async def job_state(conn: AsyncConnection, job_id: str) -> JobState | None:
    jobs = schema.jobs
    state = await conn.scalar(select(jobs.c.state).where(jobs.c.id == job_id))
    return None if state is None else JobState(state)


async def _insert(
    conn: AsyncConnection, job_id: str, attempt: str, executor: str, ends: datetime, now: datetime
) -> bool:
    insert = insert_for(conn)
    row = {
        "job_id": job_id,
        "attempt": attempt,
        "executor": executor,
        "expires_at": ends,
        "claimed_at": now,
    }
    inserted = await conn.execute(
        insert(schema.claims)
        .values(**row)
        .on_conflict_do_nothing()
        .returning(schema.claims.c.job_id)
    )
    return inserted.first() is not None


async def claim(
    conn: AsyncConnection, job_id: str, attempt: str, executor: str, lease: float, now: datetime
) -> Claimed:
    """Claim ``job_id`` for ``attempt`` (idempotent for the same attempt)."""
    state = await job_state(conn, job_id)
    if state is None:
        return Claimed("unknown")
    claims = schema.claims
    if state not in TERMINAL_STATES and await _insert(
        conn, job_id, attempt, executor, _ends(now, lease), now
    ):
        return Claimed("granted")
    row = (await conn.execute(select(claims).where(claims.c.job_id == job_id))).first()
    if state is JobState.STOPPED or (row is not None and row.attempt == STOP_ATTEMPT):
        return Claimed("stopped")
    if row is None:
        return Claimed("expired")  # it ended without running (e.g. timed out in the queue)
    if row.attempt == attempt and state not in TERMINAL_STATES:
        await renew(conn, job_id, attempt, lease, now)
        return Claimed("granted")
    if state in TERMINAL_STATES:
        return Claimed("claimed")
    lapsed = (schema.utc(row.expires_at) or RELEASED) < now
    if lapsed and row.executor in ("", executor):  # handed back, or this executor's own
        if await take_over(conn, job_id, attempt, executor, row.attempt, _ends(now, lease), now):
            return Claimed("granted")
        return Claimed("claimed")
    return Claimed("claimed", holder=row.executor, holder_attempt=row.attempt, lapsed=lapsed)


async def take_over(
    conn: AsyncConnection,
    job_id: str,
    attempt: str,
    executor: str,
    old_attempt: str,
    ends: datetime,
    now: datetime,
    lapsed: bool = False,
) -> bool:
    """Give the claim held by ``old_attempt`` to ``attempt`` until ``ends``; False if it
    changed meanwhile, if the job ended meanwhile (its run finished while the holder's
    liveness was being asked: taking it over would run it again) or, with ``lapsed``, if the
    lease no longer lapsed by ``now`` (its holder renewed it meanwhile)."""
    claims, jobs = schema.claims, schema.jobs
    not_ended = select(jobs.c.id).where(
        jobs.c.id == job_id, jobs.c.state.notin_([state.value for state in TERMINAL_STATES])
    )
    held = and_(
        claims.c.job_id == job_id,
        claims.c.attempt == old_attempt,
        claims.c.job_id.in_(not_ended),
    )
    if lapsed:
        held = and_(held, claims.c.expires_at < now)
    moved = await conn.execute(
        update(claims)
        .where(held)
        .values(attempt=attempt, executor=executor, expires_at=ends, claimed_at=now)
    )
    return bool(moved.rowcount)


async def renew(
    conn: AsyncConnection, job_id: str, attempt: str, lease: float, now: datetime
) -> bool:
    """Extend the lease of ``attempt``; False when it no longer holds the job."""
    claims = schema.claims
    moved = await conn.execute(
        update(claims)
        .where(and_(claims.c.job_id == job_id, claims.c.attempt == attempt))
        .values(expires_at=_ends(now, lease))
    )
    return bool(moved.rowcount)


async def release(conn: AsyncConnection, job_id: str, attempt: str, now: datetime) -> bool:
    """End the lease of ``attempt`` at ``now`` (its run was handed back, so no executor holds
    it): the next claim takes it, and the sweeper resends its compute message
    (``store.lapses``)."""
    claims = schema.claims
    moved = await conn.execute(
        update(claims)
        .where(and_(claims.c.job_id == job_id, claims.c.attempt == attempt))
        .values(expires_at=now, executor="")
    )
    return bool(moved.rowcount)


async def hold_for_stop(conn: AsyncConnection, job_id: str, now: datetime) -> bool:
    """Take the claim of a job for a stop: True unless a live attempt holds it."""
    if await _insert(conn, job_id, STOP_ATTEMPT, "", FOREVER, now):
        return True
    claims = schema.claims
    row = (await conn.execute(select(claims).where(claims.c.job_id == job_id))).first()
    if row is None or row.attempt == STOP_ATTEMPT:
        return True
    if (schema.utc(row.expires_at) or RELEASED) >= now:
        return False
    return await take_over(conn, job_id, STOP_ATTEMPT, "", row.attempt, FOREVER, now)


async def holders(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, str]:
    """The attempt holding each of ``job_ids`` that has a claim."""
    if not job_ids:
        return {}
    claims = schema.claims
    rows = await conn.execute(
        select(claims.c.job_id, claims.c.attempt).where(claims.c.job_id.in_(list(job_ids)))
    )
    return {row.job_id: row.attempt for row in rows}
