"""Lapsed runs: a claim whose lease ended while its job had not is resent, once per lapse.

A compute message is acked by an executor whose claim is answered ``claimed`` (another
attempt holds a live lease). If the holder then hands the run back (``release``: drain,
shutdown, a lost lease) or dies (its lease lapses), no compute message is left and no
executor holds the run. :func:`mark_lapsed` finds such claims — lease ended after
:data:`~.claims.RELEASED`, job not ended, not held for a stop — and makes each job's
compute message due now in the ``retries`` table (the attempt number is kept: a lapse is
not a retry attempt); the sweeper republishes it like a due retry. The claim's lease end is
set to ``RELEASED`` by a conditional ``UPDATE`` (``WHERE`` the lease still ended after
``RELEASED``), so each lapse is resent once, by one requester of those sharing the store.
The lapsed attempt still holds the claim: if it renews (it was slow, not dead) it keeps the
run and the resent copy is answered ``claimed``; otherwise the next claim takes it over.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import STATE_ORDER, JobState

from . import schema
from .claims import RELEASED, STOP_ATTEMPT
from .dialect import insert_for


async def mark_lapsed(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    """Make the compute message of each job whose claim lapsed or was released by ``now``
    due now (``retries``); the IDs of the jobs this call marked."""
    claims, jobs = schema.claims, schema.jobs
    ended = and_(claims.c.expires_at > RELEASED, claims.c.expires_at <= now)
    rows = await conn.execute(
        select(claims.c.job_id, claims.c.attempt)
        .join(jobs, jobs.c.id == claims.c.job_id)
        .where(
            ended,
            claims.c.attempt != STOP_ATTEMPT,
            jobs.c.state_rank < STATE_ORDER[JobState.COMPLETED],
        )
        .order_by(claims.c.expires_at)
        .limit(limit)
    )
    marked = []
    for row in rows.all():
        moved = await conn.execute(
            update(claims)
            .where(claims.c.job_id == row.job_id, claims.c.attempt == row.attempt, ended)
            .values(expires_at=RELEASED)
        )
        if moved.rowcount:
            await _due_now(conn, row.job_id, now)
            marked.append(row.job_id)
    return marked


async def _due_now(conn: AsyncConnection, job_id: str, now: datetime) -> None:
    """Set the job's compute message due at ``now``, keeping its attempt number."""
    statement = insert_for(conn)(schema.retries).values(job_id=job_id, attempt=1, due_at=now)
    await conn.execute(
        statement.on_conflict_do_update(index_elements=["job_id"], set_={"due_at": now})
    )
