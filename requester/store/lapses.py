"""Lapsed runs: a claim whose lease ended while its job had not has its compute message resent.

A compute message is acked by an executor whose claim is answered ``claimed`` (another
attempt holds a live lease). If the holder then hands the run back (``release``: drain,
shutdown, a lost lease) or dies (its lease lapses), no compute message is left and no
executor holds the run. :func:`lapsed` finds such claims — lease ended after
:data:`~.claims.RELEASED`, job not ended, not held for a stop — with the executor that held
each (``""`` once handed back); the sweeper keeps those whose holder is alive and may still
renew (``shoal.requester.leases``: the requester was away) and passes the rest to
:func:`mark_lapsed`, which makes each job's compute message due now in the ``retries`` table
(the attempt number is kept: a lapse is not a retry attempt); the sweeper republishes it like
a due retry, and again while no claim holds the job (``store.retries``). The claim's lease
end is set to ``RELEASED`` by a conditional ``UPDATE`` (``WHERE`` the lease still ended after
``RELEASED``), so each lapse is marked once, by one requester of those sharing the store.
The lapsed attempt still holds the claim: if it renews (it was slow, not dead) it keeps the
run and the resent copy is answered ``claimed``; otherwise the next claim takes it over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import STATE_ORDER, JobState

from . import schema
from .claims import RELEASED, STOP_ATTEMPT
from .dialect import insert_for


@dataclass(frozen=True)
class Lapse:
    """A claim whose lease ended while its job did not: its attempt and executor."""

    job_id: str
    attempt: str
    executor: str
    """``""`` when the run was handed back."""


def _ended(now: datetime) -> ColumnElement[bool]:
    claims = schema.claims
    return and_(claims.c.expires_at > RELEASED, claims.c.expires_at <= now)


async def lapsed(conn: AsyncConnection, now: datetime, limit: int) -> list[Lapse]:
    """The claims whose lease lapsed or was released by ``now``, not yet marked, whose jobs
    have not ended (the longest lapsed first)."""
    claims, jobs = schema.claims, schema.jobs
    rows = await conn.execute(
        select(claims.c.job_id, claims.c.attempt, claims.c.executor)
        .join(jobs, jobs.c.id == claims.c.job_id)
        .where(
            _ended(now),
            claims.c.attempt != STOP_ATTEMPT,
            jobs.c.state_rank < STATE_ORDER[JobState.COMPLETED],
        )
        .order_by(claims.c.expires_at)
        .limit(limit)
    )
    return [Lapse(row.job_id, row.attempt, row.executor) for row in rows]


async def mark_lapsed(conn: AsyncConnection, found: Sequence[Lapse], now: datetime) -> list[str]:
    """Make the compute message of each of ``found`` whose lease is still ended (the same
    attempt, not renewed, not marked meanwhile) due now (``retries``); the job IDs marked."""
    claims = schema.claims
    marked = []
    for lapse in found:
        moved = await conn.execute(
            update(claims)
            .where(
                claims.c.job_id == lapse.job_id,
                claims.c.attempt == lapse.attempt,
                _ended(now),
            )
            .values(expires_at=RELEASED)
        )
        if moved.rowcount:
            await _due_now(conn, lapse.job_id, now)
            marked.append(lapse.job_id)
    return marked


async def _due_now(conn: AsyncConnection, job_id: str, now: datetime) -> None:
    """Set the job's compute message due at ``now``, keeping its attempt number."""
    statement = insert_for(conn)(schema.retries).values(job_id=job_id, attempt=1, due_at=now)
    await conn.execute(
        statement.on_conflict_do_update(index_elements=["job_id"], set_={"due_at": now})
    )
