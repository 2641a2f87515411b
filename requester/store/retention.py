"""Retention: the history of jobs that ended long ago is removed, outputs and logs included.

:func:`prune_ended` takes the jobs that ended (``completed``, ``failed``, ``stopped``) before
a cutoff, with the submitted original each was translated from, and deletes their rows from
every table keyed by a job ID: labels, executions, log chunks and streams, outputs, event
marks, claims, deadlines, retries, blob references. A job still waiting or running is never
touched, nor is an original whose translated job has not ended. Then the blobs (shared code)
stored before the cutoff that no job left names are removed too. Deleting is idempotent, so
several requesters pruning the same store at once remove each job once between them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.model import JobState

from . import schema

ENDED = (JobState.COMPLETED.value, JobState.FAILED.value, JobState.STOPPED.value)


def _job_tables() -> list[Table]:
    """The tables whose rows belong to one job (``job_id``), the jobs table last."""
    keyed = [table for table in schema.metadata.sorted_tables if "job_id" in table.c]
    return [*keyed, schema.jobs]


async def prune_ended(conn: AsyncConnection, before: datetime, limit: int) -> list[str]:
    """Delete up to ``limit`` jobs that ended before ``before`` (with the original each was
    translated from); the IDs of the ended jobs removed."""
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
    for table in _job_tables() if doomed else []:
        key = table.c.id if table is jobs else table.c.job_id
        await conn.execute(delete(table).where(key.in_(doomed)))
    blobs, named = schema.blobs, schema.job_blobs
    await conn.execute(
        delete(blobs).where(
            blobs.c.created_at < before, blobs.c.sha256.not_in(select(named.c.sha256))
        )
    )
    return ended
