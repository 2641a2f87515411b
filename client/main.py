"""The ``shoal`` entry point: commands, and errors turned into one line and an exit code."""

from __future__ import annotations

import sys

import click

from shoal.errors import EXIT_USAGE, ShoalError

from .exec_command import exec_command
from .jobs_command import job_group
from .serve_command import serve_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--broker", metavar="URL", envvar=None, help="AMQP URL of RabbitMQ (default $SHOAL_BROKER_URL)."
)
@click.version_option(package_name="shoal")
def cli(broker: str | None) -> None:
    """Shoal runs code, not containers: submit a job of some type and get its results."""


cli.add_command(exec_command)
cli.add_command(job_group)
cli.add_command(serve_group)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; ``ShoalError`` becomes ``Type: message`` on stderr and its exit code."""
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
