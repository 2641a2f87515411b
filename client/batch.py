"""Batches: many jobs submitted together, each labelled ``batch=<batch ID>``.

A batch file is JSON Lines: one job spec a line (what ``shoal job run`` takes, written as
one JSON object), blank lines and lines starting with ``#`` skipped. The whole file is
checked before anything is submitted: every bad line is reported with its number and field
path, and then nothing is submitted. The jobs then go through
:meth:`shoal.client.api.AsyncClient.submit_many` (pipelined, each publish confirmed); a job the
requester refuses does not stop the others, and every accepted job's ID is printed.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from shoal import limits
from shoal.errors import InvalidJobError, ShoalError, UnavailableError, UsageError
from shoal.model import Job, parse_job

from .settings import ClientSettings

if TYPE_CHECKING:
    from .api import Submitted
from .specfile import parse_spec, read_source

BATCH_LABEL = "batch"
MAX_BATCH_JOBS = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
MAX_REPORTED = 20
"""Bad lines printed before the count of the rest."""


def new_batch_id() -> str:
    """A fresh batch ID, ``b-<12 hex digits>``."""
    return f"b-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Line:
    """One job of a batch file, with the line it came from."""

    number: int
    job: Job


def read_batch(source: str) -> list[Line]:
    """Every job in JSON Lines file ``source`` (``-``: standard input); ``InvalidJobError``
    after printing each bad line (``line N: field: problem``) to stderr."""
    name = "<stdin>" if source == "-" else source
    text = read_source(source, MAX_BATCH_BYTES)
    lines, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith(b"#"):
            continue
        try:
            if not raw.lstrip().startswith(b"{"):
                raise InvalidJobError("a batch line is one JSON object (a job spec)")
            job = parse_job(parse_spec(raw, name))
            limits.check_job(job)
            lines.append(Line(number, job))
        except UsageError as error:
            problems.append(f"line {number}: {error.message.removeprefix(f'{name}: ')}")
    if len(lines) + len(problems) > MAX_BATCH_JOBS:
        raise UsageError(f"{name}: a batch holds at most {MAX_BATCH_JOBS} jobs")
    if problems:
        for problem in problems[:MAX_REPORTED]:
            click.echo(problem, err=True)
        if len(problems) > MAX_REPORTED:
            click.echo(f"... and {len(problems) - MAX_REPORTED} more bad lines", err=True)
        raise InvalidJobError(
            f"{name}: {len(problems)} bad line(s) of {len(lines) + len(problems)}; "
            "nothing was submitted"
        )
    if not lines:
        raise UsageError(f"{name}: no jobs in the batch")
    return lines


def labelled(jobs: Sequence[Job], batch_id: str) -> list[Job]:
    """``jobs``, each with the label ``batch=<batch_id>``."""
    return [j.model_copy(update={"labels": {**j.labels, BATCH_LABEL: batch_id}}) for j in jobs]


def submit_batch(
    settings: ClientSettings,
    jobs: Sequence[Job],
    *,
    origins: Sequence[str],
    idempotency_key: str | None = None,
    batch_id: str | None = None,
) -> str:
    """Submit ``jobs`` as one batch: print the batch ID, then each accepted job's ID (one a
    line, in order); each refused job is reported on stderr with its origin (``line 3``,
    a file name). Returns the batch ID; raises the first refusal's error once all are
    through (exit 2, or 3 when the broker or requester was unreachable)."""
    import asyncio

    from .api import AsyncClient

    batch_id = batch_id or new_batch_id()
    click.echo(batch_id)
    sys.stdout.flush()
    wanted = labelled(jobs, batch_id)

    async def main() -> list[Submitted | ShoalError]:
        async with AsyncClient(settings=settings) as client:
            return await client.submit_many(wanted, idempotency_key=idempotency_key)

    first: ShoalError | None = None
    refused = 0
    for origin, result in zip(origins, asyncio.run(main()), strict=True):
        if isinstance(result, ShoalError):
            refused += 1
            first = first or result
            click.echo(f"{origin}: {type(result).__name__}: {result.message}", err=True)
        else:
            click.echo(result.job_id)
    sys.stdout.flush()
    if first is not None:
        summary = f"{refused} of {len(wanted)} jobs of batch {batch_id} were not submitted"
        if isinstance(first, UnavailableError):
            raise UnavailableError(f"{summary}: {first.message}")
        raise UsageError(summary)
    return batch_id
