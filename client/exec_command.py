"""``shoal exec``: build a job from a job type's template and submit it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from .output import FORMATS

if TYPE_CHECKING:
    from shoal.model import Job

    from .prepare import ExecOptions
    from .settings import ClientSettings

EXAMPLES = (
    "shoal exec python --code app.py -- python app.py",
    'shoal exec python --version=3.11 --wait -- -c "import this"',
    "shoal exec python --code proj/ -i src=data.csv,dst=/inputs/data.csv -- python main.py",
    'shoal exec duckdb --code q.sql -- -init /code/q.sql -c "select 42"',
)
NOTE = (
    "Everything after -- reaches the program exactly as typed. Before --, --key=value sets "
    "a template variable of the job type (python: --version=3.11)."
)


def job_types_line() -> str:
    """``Job types: a, b`` — every type a template is found for, sorted."""
    from .settings import ClientSettings
    from .templates import discover

    return "Job types: " + ", ".join(sorted(discover(ClientSettings.from_env().template_dirs)))


class ExecCommand(click.Command):
    """A command that keeps the words after ``--`` aside, verbatim."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["shoal.after"] = args[cut + 1 :]
            args = args[:cut]
        else:
            ctx.meta["shoal.after"] = []
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from .jobtypes_command import HELP_TIMEOUT, fetch, option_text
        from .settings import load_client_settings

        found = fetch(load_client_settings(ctx), HELP_TIMEOUT)
        formatter.write_paragraph()
        if found.source == "cluster":
            formatter.write("Job types the cluster runs (shoal job-types for more):\n")
        else:
            formatter.write(
                "Job types of this installation (no requester answered; shoal job-types "
                "asks again):\n"
            )
        with formatter.indentation():
            formatter.write_dl(
                [
                    (
                        kind["name"],
                        kind["description"]
                        + "".join(f"; {option_text(o)}" for o in kind["options"]),
                    )
                    for kind in found.data["job_types"]
                ]
            )
        formatter.write_paragraph()
        formatter.write("Examples:\n")
        for example in EXAMPLES:
            formatter.write(f"  {example}\n")
        formatter.write_paragraph()
        formatter.write_text(NOTE)


@click.command(
    "exec",
    cls=ExecCommand,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True},
    short_help="Run code as a job of some type (see Job types below).",
)
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="TYPE [ARGS]... [-- ARGS...]")
@click.option("--code", metavar="PATH", help="File or folder sent with the job, at /code.")
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="src=URI,dst=PATH",
    help="Input: a local path (sent with the job), http(s):// URL, or file:// path on the node.",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="NAME:PATH",
    help="Extra folder to collect after the job (default outputs:/outputs).",
)
@click.option("-e", "--env", multiple=True, metavar="K=V", help="Environment variable.")
@click.option("-l", "--label", "labels", multiple=True, metavar="k=v", help="Label for the job.")
@click.option("--timeout", metavar="DURATION", help="Execution time limit, e.g. 90s, 5m.")
@click.option(
    "--queue-timeout",
    metavar="DURATION",
    help="Fail the job if it has not started within this, e.g. 30s (executor or not).",
)
@click.option(
    "--grace",
    metavar="DURATION",
    help="When stopped or timed out, the job gets SIGTERM, then SIGKILL after this, e.g. "
    "30s (default: the executor's, 10s unless its operator says otherwise).",
)
@click.option(
    "--retries",
    metavar="N",
    help="Run the job again, up to N more times, when a run fails through no fault of its "
    "own (see --retry-on). Each attempt shows as an execution in 'shoal job describe'.",
)
@click.option(
    "--retry-on",
    metavar="KINDS",
    help="Failures to retry, comma-separated: lost (executor lost), engine (executor or "
    "Docker error), exit (non-zero exit: only when listed). Default: lost,engine.",
)
@click.option(
    "--retry-backoff",
    metavar="DURATION",
    help="Wait before the first retry, doubled for each next one (at most 5m, plus up to "
    "25% jitter). Default: 5s.",
)
@click.option("--cpu", metavar="CORES", help="CPU limit, e.g. 1.5 or 500m.")
@click.option("--memory", metavar="SIZE", help="Memory limit, e.g. 512Mi, 2GB.")
@click.option(
    "--network",
    type=click.Choice(["none", "http", "full"]),
    help="Network access (default: the job type's; python: http to package indexes).",
)
@click.option("--domain", "domains", multiple=True, help="Domain allowed with --network http.")
@click.option("--name", help="Job name (default: the job type).")
@click.option("--idempotency-key", metavar="KEY", help="Same key, same job: safe to retry.")
@click.option(
    "--each",
    metavar="PATTERN",
    help="One job per file matching PATTERN (e.g. 'data/*.csv'; quote it): the file lands "
    "at /inputs/<its name> and {} in the arguments becomes that path. Prints the batch ID, "
    "then one job ID a line.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check and print the job instead of submitting it: the checks a submit makes "
    "before sending, and the job type's translation as a requester would do it. What only "
    "the cluster knows (access, the images executors hold, the requester's memory limit, "
    "idempotency keys) is checked on submit.",
)
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
def exec_command(ctx: click.Context, /, words: tuple[str, ...], **flags: Any) -> None:
    """Run TYPE's template with ARGS and submit the job.

    The job's command is TYPE and its arguments are ARGS, as typed.
    """
    # Shoal uses no pydantic plugins, and looking for them scans every installed package's
    # metadata on the first model build: ~10 ms of each exec. An explicit setting wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from .prepare import ExecOptions, prepare_job, split_argv
    from .settings import load_client_settings

    settings = load_client_settings(ctx)
    options = [name for param in ctx.command.params for name in param.opts if name[:2] == "--"]
    job_type, arguments, variables = split_argv(list(words), ctx.meta["shoal.after"], options)
    exec_options = ExecOptions(
        job_type=job_type,
        arguments=arguments,
        variables=variables,
        **{k: v for k, v in flags.items() if k in ExecOptions.__dataclass_fields__},
    )
    if flags["each"] is not None:
        _fan_out(settings, exec_options, flags)
        return
    job = prepare_job(exec_options, settings.template_dirs)
    if flags["dry_run"]:
        dry_run(job, flags)
        return
    from .submit import submit_and_report

    submit_and_report(
        settings,
        job,
        idempotency_key=flags["idempotency_key"],
        wait=flags["wait"],
        follow=flags["follow"],
        id_only=flags["id_only"],
        wait_timeout=flags["wait_timeout"],
    )


def _fan_out(settings: ClientSettings, options: ExecOptions, flags: dict[str, Any]) -> None:
    """``--each``: one job per match, submitted as one batch (``--dry-run``: printed as a
    JSON Lines batch file that ``shoal job run --batch`` takes)."""
    import json

    from shoal.errors import UsageError

    from .batch import submit_batch
    from .prepare import fan_out, prepare_job

    if flags["wait"] or flags["follow"] or flags["id_only"] or flags["wait_timeout"]:
        raise UsageError(
            "--each prints the batch ID and job IDs; --wait, -f, --wait-timeout and --id-only "
            "are for one job (shoal job wait --batch waits for a batch)"
        )
    each = fan_out(options, flags["each"])
    jobs = [prepare_job(one, settings.template_dirs) for one in each]
    if flags["dry_run"]:
        for job in jobs:
            click.echo(json.dumps(job.model_dump(mode="json")))
        return
    submit_batch(
        settings,
        jobs,
        origins=[str(one.each) for one in each],
        idempotency_key=flags["idempotency_key"],
    )


def dry_run(job: Job, flags: dict[str, Any]) -> None:
    """Print ``job`` after the checks a submit runs here and the requester's translation."""
    from .output import echo_data
    from .submit import checked_submission, translate_here

    checked_submission(
        job,
        idempotency_key=flags["idempotency_key"],
        wait=flags["wait"],
        follow=flags["follow"],
        wait_timeout=flags["wait_timeout"],
    )
    note = translate_here(job)
    echo_data(job.model_dump(mode="json"), flags["output_format"])
    if note:
        click.echo(f"Note: {note}; the requester checks it on submit", err=True)
