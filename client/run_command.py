"""``shoal job run FILE|-``: submit a job written as a spec file (``shoal.client.specfile``)."""

from __future__ import annotations

import click

from .output import FORMATS
from .settings import load_client_settings

EPILOG = """\b
Examples:
  shoal exec python --code app.py --dry-run --output-format yaml -- python app.py > job.yaml
  shoal job run job.yaml --wait
  cat job.json | shoal job run - --id-only
  shoal job run --batch jobs.jsonl        # prints the batch ID, then one job ID a line

A spec is what 'shoal exec ... --dry-run' prints, or a job written by hand (a typed job such
as python, or engine type docker). Its id, owner, state and created_at are set on submission:
the same file submitted twice makes two jobs.

With --batch, FILE is JSON Lines (one spec a line). The whole file is checked first; if any
line is bad, each bad line is reported and nothing is submitted. Every job of the batch
gets the label batch=<batch ID>: shoal job list -l batch=ID shows them."""


@click.command("run", epilog=EPILOG, short_help="Submit a job written as a YAML or JSON file.")
@click.argument("source", metavar="FILE|-")
@click.option("--batch", is_flag=True, help="FILE is JSON Lines: one job a line, one batch.")
@click.option("--idempotency-key", metavar="KEY", help="Same key, same job: safe to retry.")
@click.option("--dry-run", is_flag=True, help="Check the spec and print the job; submit nothing.")
@click.option("--wait/--no-wait", default=False, help="Wait for the job to finish.")
@click.option("-f", "--follow", is_flag=True, help="Stream the job's logs until it finishes.")
@click.option(
    "--wait-timeout",
    metavar="DURATION",
    help="With --wait/-f: give up waiting after this (exit 124; the job is left as it is).",
)
@click.option("--id-only", is_flag=True, help="Print only the job ID.")
@click.option(
    "--output-format",
    type=click.Choice(FORMATS),
    default="json",
    show_default=True,
    help="Format of the job printed by --dry-run.",
)
@click.pass_context
def run_job(
    ctx: click.Context,
    /,
    source: str,
    batch: bool,
    idempotency_key: str | None,
    dry_run: bool,
    wait: bool,
    follow: bool,
    wait_timeout: str | None,
    id_only: bool,
    output_format: str,
) -> None:
    """Submit the job in FILE (YAML or JSON; - reads standard input)."""
    from .specfile import read_spec
    from .submit import submit_and_report

    if batch:
        waiting = wait or follow or id_only or wait_timeout is not None
        _run_batch(ctx, source, idempotency_key, dry_run, waiting)
        return
    job = read_spec(source)
    if dry_run:
        from .exec_command import dry_run as check_and_print

        flags = {"idempotency_key": idempotency_key, "wait": wait, "follow": follow}
        check_and_print(
            job, {**flags, "wait_timeout": wait_timeout, "output_format": output_format}
        )
        return
    submit_and_report(
        load_client_settings(ctx),
        job,
        idempotency_key=idempotency_key,
        wait=wait,
        follow=follow,
        id_only=id_only,
        wait_timeout=wait_timeout,
    )


def _run_batch(
    ctx: click.Context, source: str, key: str | None, dry_run: bool, waiting: bool
) -> None:
    import json

    from shoal.errors import UsageError

    from .batch import read_batch, submit_batch

    if waiting:
        raise UsageError(
            "--batch prints the batch ID and job IDs; --wait, -f, --wait-timeout and --id-only "
            "are for one job (shoal job wait --batch waits for a batch)"
        )
    lines = read_batch(source)
    if dry_run:
        for line in lines:
            click.echo(json.dumps(line.job.model_dump(mode="json")))
        return
    submit_batch(
        load_client_settings(ctx),
        [line.job for line in lines],
        origins=[f"line {line.number}" for line in lines],
        idempotency_key=key,
    )
