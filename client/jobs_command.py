"""``shoal job list|describe|logs|get|wait|stop``: a job's life after submission (``shoal.api``)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from shoal.errors import UsageError
from shoal.units import format_bytes, parse_memory

from .output import FORMATS, echo_data
from .run_command import run_job
from .settings import ClientSettings, load_client_settings

if TYPE_CHECKING:
    from .session import Session

T = TypeVar("T")


def _run(ctx: click.Context, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open a session with the CLI's settings and run ``work(session)`` in it."""
    import asyncio

    settings: ClientSettings = load_client_settings(ctx)

    async def main() -> T:
        from .session import open_session

        async with open_session(settings) as session:
            return await work(session)

    return asyncio.run(main())


@click.group("job", short_help="List, describe, follow, wait for, fetch and stop jobs.")
def job_group() -> None:
    """Look at and act on submitted jobs (answered by a requester from its job store)."""


job_group.add_command(run_job)


@job_group.command("list")
@click.option("--state", help="Only jobs in this state (queued, running, completed, ...).")
@click.option("-l", "--label", "labels", multiple=True, metavar="k=v", help="Only jobs with it.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--output-format", type=click.Choice(("table", *FORMATS)), default="table")
@click.pass_context
def list_jobs(
    ctx: click.Context, state: str | None, labels: tuple[str, ...], limit: int, output_format: str
) -> None:
    """Jobs, newest first."""
    wanted: dict[str, str] = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{label!r} is not k=v", param_hint="--label")
        wanted[key] = value
    jobs = _run(ctx, lambda s: s.api("list", state=state, labels=wanted, limit=limit))
    if output_format != "table":
        echo_data(jobs, output_format)
        return
    rows = [
        (
            j["id"],
            j["job_type"],
            j["state"],
            "" if j["exit_code"] is None else str(j["exit_code"]),
            (j["created_at"] or "")[:19].replace("T", " "),
            j["name"],
            ",".join(f"{k}={v}" for k, v in sorted(j["labels"].items())),
        )
        for j in jobs
    ]
    _table(("ID", "TYPE", "STATE", "EXIT", "CREATED", "NAME", "LABELS"), rows)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@job_group.command("describe")
@click.argument("job_id")
@click.option("--output-format", type=click.Choice(("human", *FORMATS)), default="human")
@click.pass_context
def describe(ctx: click.Context, job_id: str, output_format: str) -> None:
    """A job's state, engine, original spec, executions, logs and outputs."""
    record = _run(ctx, lambda s: s.api("describe", job_id))
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
    if record.get("error"):
        lines.append(f"Error:       {record['error']}")
    lines += [f"Created:     {record['created_at']}", f"Updated:     {record['updated_at']}"]
    lines.append("Executions:" + ("" if record["executions"] else "  none yet"))
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
    return lines


@job_group.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the job ends.")
@click.pass_context
def logs(ctx: click.Context, job_id: str, follow: bool) -> None:
    """A job's stdout and stderr (as kept by the store)."""
    from .follow import LogPrinter, wait_for_end

    if follow:
        _run(ctx, lambda s: wait_for_end(s, job_id, follow=True, spin=False))
        return
    LogPrinter().stored(_run(ctx, lambda s: s.api("logs", job_id)))


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
    """Write a job's outputs, refusing any archive member that would escape the folder."""
    from .extract import extract, output_folder

    try:
        limit = parse_memory(max_size)
    except ValueError as error:
        raise UsageError(f"--max-size: {error}") from None
    answer = _run(ctx, lambda s: s.api("get", job_id))
    target = output_dir or Path(answer["job_id"])
    if not answer["outputs"]:
        click.echo(f"Job {answer['job_id']} has no outputs (yet)", err=True)
        return
    for name, item in answer["outputs"].items():
        folder = output_folder(target, name)
        if item["data"] is None:
            click.echo(
                f"Output {name} ({format_bytes(item['size'])}) was not kept: "
                "over the store's limit",
                err=True,
            )
            continue
        data = base64.b64decode(item["data"])
        files = extract(data, folder, f"output {name}", limit)
        click.echo(f"{folder}: {len(files)} file(s)")


@job_group.command("wait")
@click.argument("job_ids", nargs=-1, required=True, metavar="ID...")
@click.option(
    "--wait-timeout",
    metavar="DURATION",
    help="Give up after this, e.g. 90s, 5m (exit 124; the jobs are left as they are).",
)
@click.pass_context
def wait(ctx: click.Context, job_ids: tuple[str, ...], wait_timeout: str | None) -> None:
    """Wait until every job ended and is recorded: exit 0 if all completed, 1 if any failed
    or was stopped."""
    from shoal.errors import JobFailedError

    from .submit import failure_line, wait_deadline

    deadline = wait_deadline(wait_timeout)
    ids = list(dict.fromkeys(job_ids))
    ended = _run(ctx, lambda s: _wait_all(s, ids, deadline))
    failed = [record for record in ended if record["state"] != "completed"]
    for record in ended:
        click.echo(f"{record['id']} {record['state']}")
    if failed:
        raise JobFailedError(
            f"{len(failed)} of {len(ended)} jobs did not complete: "
            + "; ".join(failure_line(record) for record in failed)
        )


async def _wait_all(
    session: Session, job_ids: list[str], deadline: float | None
) -> list[dict[str, Any]]:
    """The describe record of each job once all ended, or ``WaitTimeoutError``."""
    import asyncio

    from .follow import wait_for_end, within

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
    """Stop a job: a queued one never runs, a running one is killed by its executor."""
    answer = _run(ctx, lambda s: s.api("stop", job_id))
    if answer["stopping"]:
        click.echo(f"Job {answer['job_id']} is stopping (its executor was told)")
    elif answer["state"] == "stopped":
        click.echo(f"Job {answer['job_id']} stopped")
    else:
        click.echo(f"Job {answer['job_id']} already ended: {answer['state']}")
