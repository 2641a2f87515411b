"""The ``shoal`` entry point: commands, and errors turned into one line and an exit code."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from typing import NoReturn

import click

from shoal.errors import EXIT_USAGE, ShoalError

COMMANDS = {
    "broker": ("client.broker_command", "broker_group"),
    "exec": ("client.exec_command", "exec_command"),
    "job": ("client.jobs_command", "job_group"),
    "schema": ("client.schema_command", "schema_command"),
    "serve": ("client.serve_command", "serve_group"),
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
    "--broker", metavar="URL", envvar=None, help="AMQP URL of RabbitMQ (default $SHOAL_BROKER_URL)."
)
@click.version_option(package_name="shoal")
def cli(broker: str | None) -> None:
    """Shoal runs code, not containers: submit a job of some type and get its results."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; ``ShoalError`` becomes ``Type: message`` on stderr and its exit code.

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


def _run(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="shoal", standalone_mode=False)
    except ShoalError as error:
        click.echo(f"{type(error).__name__}: {error.message}", err=True)
        return error.exit_code
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as error:
        error.show()
        return EXIT_USAGE if error.exit_code == 2 else error.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
