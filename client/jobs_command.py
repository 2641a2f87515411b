"""``shoal job list|describe|logs|get|wait|stop|rerun``: a job's life after submission
(``shoal.api``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from shoal.errors import UsageError
from shoal.units import format_bytes, parse_memory

from .output import FORMATS, echo_data
from .rerun import rerun
from .run_command import run_job
from .settings import ClientSettings, load_client_settings

if TYPE_CHECKING:
    from .api import AsyncClient
    from .session import Session

T = TypeVar("T")


def _run(ctx: click.Context, work: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Open a client (``shoal.client.api``) with the CLI's settings and run ``work(client)``."""
    import asyncio

    settings: ClientSettings = load_client_settings(ctx)

    async def main() -> T:
        from .api import AsyncClient

        async with AsyncClient(settings=settings) as client:
            return await work(client)

    return asyncio.run(main())


@click.group("job", short_help="List, describe, follow, wait for, fetch, stop and rerun jobs.")
def job_group() -> None:
    """Look at and act on submitted jobs (answered by a requester from its job store)."""


job_group.add_command(run_job)
job_group.add_command(rerun)


STATES = ("pending", "queued", "running", "completed", "failed", "stopped", "translated")


def _labels(labels: tuple[str, ...]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{label!r} is not k=v", param_hint="--label")
        wanted[key] = value
    return wanted


def _with_batch(labels: tuple[str, ...], batch_id: str | None) -> tuple[str, ...]:
    return labels if batch_id is None else (*labels, f"batch={batch_id}")


def _filters(states: tuple[str, ...], labels: tuple[str, ...], since: str | None) -> dict[str, Any]:
    from .listing import since_time

    params: dict[str, Any] = {"labels": _labels(labels)}
    if states:
        params["states"] = list(dict.fromkeys(states))
    if since is not None:
        params["since"] = since_time(since)
    return params


@job_group.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only jobs in this state; repeat for several.",
)
@click.option("-l", "--label", "labels", multiple=True, metavar="k=v", help="Only jobs with it.")
@click.option("--batch", "batch_id", metavar="BATCH", help="Only the jobs of this batch.")
@click.option(
    "--since", metavar="DURATION|TIME", help="Only jobs created since: 2h, 3d, 2026-12-07T06:00."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Show this many jobs (default: the requester's, 50).",
)
@click.option("--all", "every", is_flag=True, help="Show every matching job.")
@click.option("--after", metavar="ID", help="Start after this job (the footer's next cursor).")
@click.option("-q", "--quiet", is_flag=True, help="Print job IDs only.")
@click.option("--output-format", type=click.Choice(("table", *FORMATS)), default="table")
@click.pass_context
def list_jobs(
    ctx: click.Context,
    states: tuple[str, ...],
    labels: tuple[str, ...],
    batch_id: str | None,
    since: str | None,
    limit: int | None,
    every: bool,
    after: str | None,
    quiet: bool,
    output_format: str,
) -> None:
    """Jobs, newest first; a footer on stderr says when there are more
    ("showing 50 of 844 (next: --after ID)")."""
    import sys
    from datetime import UTC, datetime

    from .listing import LIST_HEADER, fetch, footer, list_rows, table

    params = _filters(states, _with_batch(labels, batch_id), since)  # checked before connecting
    page = _run(ctx, lambda c: fetch(c.session, params, 0 if every else limit, after))
    if output_format != "table":
        echo_data(page, output_format)
        return
    if quiet:
        for job in page["jobs"]:
            click.echo(job["id"])
    else:
        now = datetime.now(UTC)
        table(LIST_HEADER, list_rows(page["jobs"], now, relative=sys.stdout.isatty()))
    note = footer(page)
    if note:
        click.echo(note, err=True)


@job_group.command("summary")
@click.option("-l", "--label", "labels", multiple=True, metavar="k=v", help="Only jobs with it.")
@click.option("--batch", "batch_id", metavar="BATCH", help="Only the jobs of this batch.")
@click.option(
    "--since", metavar="DURATION|TIME", help="Only jobs created since: 2h, 3d, 2026-12-07T06:00."
)
@click.option("--output-format", type=click.Choice(("table", *FORMATS)), default="table")
@click.pass_context
def summary(
    ctx: click.Context,
    labels: tuple[str, ...],
    batch_id: str | None,
    since: str | None,
    output_format: str,
) -> None:
    """How many jobs are in each state, by job type (counted by the requester's store)."""
    from .listing import summary_rows, table

    params = _filters((), _with_batch(labels, batch_id), since)
    counts = _run(ctx, lambda c: c.session.api("summary", **params))
    if output_format != "table":
        echo_data(counts, output_format)
        return
    table(*summary_rows(counts))


@job_group.command("describe")
@click.argument("job_id")
@click.option("--output-format", type=click.Choice(("human", *FORMATS)), default="human")
@click.pass_context
def describe(ctx: click.Context, job_id: str, output_format: str) -> None:
    """A job's state, engine, original spec, executions, logs and outputs."""
    record = _run(ctx, lambda c: c.describe(job_id))
    if output_format != "human":
        echo_data(record, output_format)
        return
    for line in human_view(record):
        click.echo(line)


def human_view(record: dict[str, Any]) -> list[str]:
    """The ``describe`` record for people."""
    engine = record["engine_spec"]
    params = engine.get("params", {})
    state = record["state"]
    if record.get("exit_code") is not None:
        state += f" (exit code {record['exit_code']})"
    lines = [
        f"Job:         {record['id']}",
        f"Name:        {record['name']}",
        f"State:       {state}",
        f"Type:        {record['job_type']}"
        + (f" → {engine['type']}" if engine["type"] != record["job_type"] else ""),
    ]
    if record.get("waiting"):
        lines.append(f"Waiting for: {record['waiting']}")
    if params.get("image"):
        lines.append(f"Image:       {params['image']}")
    argv = [*params.get("entrypoint", []), *params.get("parameters", [])]
    if argv:
        lines.append(f"Command:     {argv!r}")
    if record.get("original_id"):
        original = (record.get("original") or {}).get("tasks", [{}])[0].get("engine", {})
        lines.append(f"Original:    {record['original_id']} ({original.get('type', '?')} job)")
    if record.get("labels"):
        lines.append("Labels:      " + ", ".join(f"{k}={v}" for k, v in record["labels"].items()))
    lines += [f"Limits lowered: {note}" for note in record.get("lowered") or []]
    lines += _outcome_lines(record)
    lines += [f"Created:     {record['created_at']}", f"Updated:     {record['updated_at']}"]
    lines.append("Executions:" + ("" if record["executions"] else _no_runs(record["state"])))
    for run in record["executions"]:
        exit_code = "" if run["exit_code"] is None else f" exit {run['exit_code']}"
        attempt = run.get("attempt") or 1
        where = (run["executor"] or "?") + (f" (attempt {attempt})" if attempt > 1 else "")
        lines.append(
            f"  {where}: {run['state']}{exit_code}, "
            f"started {run['started_at'] or '-'}, ended {run['ended_at'] or '-'}"
            + (f", error: {run['error']}" if run["error"] else "")
        )
    logs = record.get("logs") or {}
    if logs:
        lines.append(
            "Logs:        "
            + ", ".join(
                f"{name} {format_bytes(s['bytes'])}" + (" (truncated)" if s["truncated"] else "")
                for name, s in sorted(logs.items())
            )
        )
    outputs = record.get("outputs") or {}
    if outputs:
        lines.append(
            "Outputs:     "
            + ", ".join(
                f"{name} {format_bytes(o['size'])}"
                + (" (not kept: too large)" if o["truncated"] else "")
                for name, o in sorted(outputs.items())
            )
        )
    lines += [f"Left out:    {note}" for note in record.get("left_out") or []]
    return lines


def _outcome_lines(record: dict[str, Any]) -> list[str]:
    """Why the job ended (``shoal.outcomes``): its category and line, the signal, the error."""
    from shoal.outcomes import explain, headline

    outcome = explain(str(record["state"]), record.get("error"))
    if outcome.category is None:
        return [f"Error:       {record['error']}"] if record.get("error") else []
    lines = [f"Outcome:     {headline(record)}"]
    if outcome.signal:
        lines.append(f"Signal:      {outcome.signal}")
    if record.get("error"):
        lines.append(f"Error:       {record['error']}")
    return lines


def _no_runs(state: str) -> str:
    if state == "stopped":
        return "  none: stopped before it started"
    if state in ("completed", "failed"):
        return "  none: it ended before it started"
    return "  none yet"


@job_group.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the job ends.")
@click.pass_context
def logs(ctx: click.Context, job_id: str, follow: bool) -> None:
    """A job's stdout and stderr (as kept by the store). With -f, the exit code is the
    job's as with exec --wait: 0 once it completed, else its own code, 125 or 130."""
    from .follow import LogPrinter, echo_lowered, wait_for_end
    from .listing import full_ids

    if not follow:
        LogPrinter().stored(_run(ctx, lambda c: c.session.api("logs", job_id)))
        return

    async def follow_to_end(client: AsyncClient) -> dict[str, Any]:
        [full_id] = await full_ids(client.session, [job_id])
        await wait_for_end(client.session, full_id, follow=True, spin=False, lowered=echo_lowered)
        return await client.describe(full_id)

    from .submit import ended

    ended(_run(ctx, follow_to_end))


@job_group.command("get")
@click.argument("job_id")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the outputs (default ./JOB_ID); each result goes in DIR/NAME.",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    default="1Gi",
    show_default=True,
    help="Refuse an output that unpacks to more than this, e.g. 512Mi, 4Gi.",
)
@click.pass_context
def get(ctx: click.Context, job_id: str, output_dir: Path | None, max_size: str) -> None:
    """Write a job's outputs, refusing any archive member that would escape the folder.

    Exits 1 when the job has not ended, or when some of its outputs were left out (over
    the executor's or the store's limit; the others are written)."""
    try:
        limit = parse_memory(max_size)
    except ValueError as error:
        raise UsageError(f"--max-size: {error}") from None
    written = _run(ctx, lambda c: c.get(job_id, output_dir, max_size=limit, allow_left_out=True))
    for name, folder in written.folders.items():
        click.echo(f"{folder}: {len(written.files[name])} file(s)")
    written.check()
    if not written.folders:
        click.echo(f"Job {written.job_id} has no outputs", err=True)


@job_group.command("wait")
@click.argument("job_ids", nargs=-1, metavar="ID...")
@click.option(
    "--batch",
    "batch_id",
    metavar="BATCH",
    help="Wait for every job of a batch (run --batch, exec --each), showing its progress.",
)
@click.option(
    "--wait-timeout",
    metavar="DURATION",
    help="Give up after this, e.g. 90s, 5m (exit 124; the jobs are left as they are).",
)
@click.pass_context
def wait(
    ctx: click.Context, job_ids: tuple[str, ...], batch_id: str | None, wait_timeout: str | None
) -> None:
    """Wait until every job ended and is recorded: exit 0 if all completed, else the exit
    status of the first (in the order given) that did not: its own exit code when its
    command exited non-zero, 130 when it was stopped, 125 for any other failure.

    With --batch: progress (a bar on a terminal, a line per change elsewhere) until no job
    of the batch waits or runs; exit 0 if all completed, 1 if any failed or was stopped."""
    from shoal.errors import JobFailedError, UsageError
    from shoal.outcomes import exit_status

    from .submit import failure_line, wait_deadline

    deadline = wait_deadline(wait_timeout)
    if (batch_id is None) == (not job_ids):
        raise UsageError("give job IDs or --batch BATCH (one of the two)")
    if batch_id is not None:
        from .batchwait import verdict, wait_batch

        bid = batch_id
        verdict(bid, _run(ctx, lambda c: wait_batch(c.session, bid, deadline)))
        return
    ids = list(dict.fromkeys(job_ids))
    ended = _run(ctx, lambda c: _wait_all(c.session, ids, deadline))
    failed = [record for record in ended if record["state"] != "completed"]
    for record in ended:
        click.echo(f"{record['id']} {record['state']}")
    if failed:
        lines = "; ".join(failure_line(record) for record in failed)
        head = "" if len(ended) == 1 else f"{len(failed)} of {len(ended)} jobs did not complete: "
        raise JobFailedError(head + lines, exit_status(failed[0]))


async def _wait_all(
    session: Session, job_ids: list[str], deadline: float | None
) -> list[dict[str, Any]]:
    """The describe record of each job once all ended, or ``WaitTimeoutError``."""
    import asyncio

    from .follow import wait_for_end, within
    from .listing import full_ids

    job_ids = list(dict.fromkeys(await full_ids(session, job_ids)))
    seen = dict.fromkeys(job_ids, "state unknown")

    async def one(job_id: str) -> dict[str, Any]:
        await wait_for_end(session, job_id, follow=False, spin=False, seen=seen)
        record: dict[str, Any] = await session.api("describe", job_id)
        return record

    return await within(deadline, asyncio.gather(*(one(job_id) for job_id in job_ids)), seen)


@job_group.command("stop")
@click.argument("job_id")
@click.pass_context
def stop(ctx: click.Context, job_id: str) -> None:
    """Stop a job: a queued one never runs, a running one gets SIGTERM, then SIGKILL once its
    grace has passed (shoal exec --grace; the executor's default otherwise)."""
    answer = _run(ctx, lambda c: c.stop(job_id))
    if answer["stopping"]:
        click.echo(
            f"Job {answer['job_id']} is stopping: its executor sends it SIGTERM, then SIGKILL "
            "once its grace has passed"
        )
    elif answer["state"] == "stopped":
        click.echo(f"Job {answer['job_id']} stopped")
    else:
        click.echo(f"Job {answer['job_id']} already ended: {answer['state']}")
