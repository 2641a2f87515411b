"""The ``shoal`` entry point: commands, and errors turned into one line and an exit code."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from .failures import report

COMMANDS = {
    "broker": ("shoal.client.broker_command", "broker_group"),
    "config": ("shoal.client.config_command", "config_group"),
    "exec": ("shoal.client.exec_command", "exec_command"),
    "job": ("shoal.client.jobs_command", "job_group"),
    "job-types": ("shoal.client.jobtypes_command", "job_types_command"),
    "schema": ("shoal.client.schema_command", "schema_command"),
    "serve": ("shoal.client.serve_command", "serve_group"),
    "status": ("shoal.client.status_command", "status_command"),
    "version": ("shoal.client.version_command", "version_command"),
}
"""Command name → (module, attribute): each imported only when its command runs (or for
``--help``), so ``shoal exec`` does not pay for the job and serve commands' imports."""


QUICK_EXIT = frozenset({"exec", "job"})
"""Short client commands that leave without the interpreter's teardown (see ``main``)."""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; remembers the one invoked."""

    invoked: str | None = None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        self.invoked = name
        return name, command, rest

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with closed_pipe_exits():  # ``--help`` prints while the arguments are parsed
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with closed_pipe_exits():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from .exec_command import job_types_line

        formatter.write_paragraph()
        formatter.write_text(job_types_line() + "  (shoal exec --help shows how to run them)")

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--broker",
    metavar="URL",
    envvar=None,
    help="AMQP URL of RabbitMQ (default: --profile, $SHOAL_BROKER_URL, $SHOAL_PROFILE, the "
    "config file's default_profile, amqp://guest:guest@127.0.0.1:5672/).",
)
@click.option(
    "--profile",
    metavar="NAME",
    help="Use the broker URL of [profiles.NAME] in ~/.config/shoal/config.toml "
    "($SHOAL_CONFIG names another file).",
)
@click.version_option(package_name="shoal")
def cli(broker: str | None, profile: str | None) -> None:
    """Shoal runs code, not containers: submit a job of some type and get its results."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every error becomes one line ``Type: message`` on stderr and its exit
    code (``shoal.client.failures``).

    Run as a program (``argv`` is ``None``), ``exec`` and ``job`` end with ``os._exit``
    once their output is flushed: tearing down the interpreter (pydantic, jinja2, click)
    costs 30 to 50 ms, a sixth of an ``exec``, and these commands hold nothing that needs
    it (their broker connection is closed, their files are written and closed).
    """
    code = _run(argv)
    if argv is None and isinstance(cli, LazyGroup) and cli.invoked in QUICK_EXIT:
        _quick_exit(code)
    return code


def _quick_exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed stream
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def closed_pipe_exits() -> Iterator[None]:
    """A closed standard output ends the command as ``report`` says (no line, exit 141),
    before click's own handling turns it into exit 1."""
    try:
        yield
    except BrokenPipeError as error:
        raise click.exceptions.Exit(report(error)) from None


def _run(argv: list[str] | None) -> int:
    try:
        result = cli.main(args=argv, prog_name="shoal", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.exceptions.NoArgsIsHelpError as bare:
        click.echo(bare.ctx.get_help())  # ``shoal`` or ``shoal job`` alone: help, not an error
        return 0
    except (Exception, KeyboardInterrupt) as error:  # the last resort: one line, no traceback
        return report(error)
    return result if isinstance(result, int) else 0  # an ``Exit`` raised while running


if __name__ == "__main__":
    sys.exit(main())
