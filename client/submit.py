"""``shoal exec`` after the job is built: submit it, print its ID, maybe wait or follow."""

from __future__ import annotations

import asyncio
import sys

import click

from shoal.errors import JobFailedError
from shoal.model import Job, JobState
from shoal.wire import Submission

from .settings import ClientSettings


def submit_and_report(
    settings: ClientSettings,
    job: Job,
    *,
    idempotency_key: str | None = None,
    wait: bool = False,
    follow: bool = False,
    id_only: bool = False,
) -> None:
    """Submit ``job`` and print the new job's ID; with ``wait``/``follow`` see it through.

    Raises ``UnavailableError`` (exit 3) when the broker or a requester cannot be reached,
    the requester's typed error (exit 2) for a bad job, ``JobFailedError`` (exit 1) when a
    waited-on job fails or is stopped.
    """
    asyncio.run(_submit(settings, job, idempotency_key, wait or follow, follow, id_only))


async def _submit(
    settings: ClientSettings,
    job: Job,
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    id_only: bool,
) -> None:
    from .session import open_session

    async with open_session(settings) as session:
        reply = await session.submit(Submission(job=job, idempotency_key=idempotency_key))
        job_id = str(reply.job_id)
        if id_only:
            click.echo(job_id)
        else:
            origin = (
                f" (translated from {reply.original_id})" if reply.original_id != job_id else ""
            )
            click.echo(f"Job ID: {job_id}{origin}")
            if not wait:
                click.echo(f"Follow it with: shoal job logs -f {job_id}", err=True)
        sys.stdout.flush()
        if not wait:
            return
        from .follow import wait_for_end

        state = await wait_for_end(session, job_id, follow=follow, spin=not id_only)
        if state != JobState.COMPLETED:
            record = await session.api("describe", job_id)
            raise JobFailedError(failure_line(record))
        if not id_only:
            click.echo(f"Job {job_id} completed", err=True)


def failure_line(record: dict[str, object]) -> str:
    """``job ID failed: exit code N: error`` from a describe record."""
    parts = [f"job {record['id']} {record['state']}"]
    if record.get("exit_code") is not None:
        parts.append(f"exit code {record['exit_code']}")
    if record.get("error"):
        parts.append(str(record["error"]))
    return ": ".join(parts)
