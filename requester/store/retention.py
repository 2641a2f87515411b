"""Retention: the history of jobs that ended long ago is removed, outputs and logs included.

:func:`prune_ended` takes the jobs that ended (``completed``, ``failed``, ``stopped``) before
a cutoff, with the submitted original each was translated from, and deletes their rows from
every table keyed by a job ID: labels, executions, log chunks and streams, outputs, event
marks, claims, deadlines, retries, blob references. A job still waiting or running is never
touched, nor is an original whose translated job has not ended. Then the blobs (shared code)
stored before the cutoff that no job left names are removed too. Deleting is idempotent, so
several requesters pruning the same store at once remove each job once between them, and
each job is reported by the one whose delete removed its row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import JobState

from . import schema

ENDED = (JobState.COMPLETED.value, JobState.FAILED.value, JobState.STOPPED.value)


def _keyed_tables() -> list[Table]:
    """The tables whose rows belong to one job (``job_id``)."""
    return [table for table in schema.metadata.sorted_tables if "job_id" in table.c]


async def prune_ended(conn: AsyncConnection, before: datetime, limit: int) -> list[str]:
    """Delete up to ``limit`` jobs that ended before ``before`` (with the original each was
    translated from); the IDs of the ended jobs this call removed (not those another
    requester removed meanwhile)."""
    jobs = schema.jobs
    rows = (
        await conn.execute(
            select(jobs.c.id, jobs.c.original_id)
            .where(jobs.c.state.in_(ENDED), jobs.c.updated_at < before)
            .order_by(jobs.c.updated_at)
            .limit(limit)
        )
    ).all()
    ended = [row.id for row in rows]
    doomed = ended + [row.original_id for row in rows if row.original_id]
    removed: set[str] = set()
    if doomed:
        for table in _keyed_tables():
            await conn.execute(delete(table).where(table.c.job_id.in_(doomed)))
        gone = await conn.execute(delete(jobs).where(jobs.c.id.in_(doomed)).returning(jobs.c.id))
        removed = set(gone.scalars())
    blobs, named = schema.blobs, schema.job_blobs
    await conn.execute(
        delete(blobs).where(
            blobs.c.created_at < before, blobs.c.sha256.not_in(select(named.c.sha256))
        )
    )
    return [job_id for job_id in ended if job_id in removed]
