"""``shoal job-types``: the job types the cluster runs, asked of a requester.

A requester answers with the job types it has both a template and a translator for
(``shoal.requester.jobtypes``). When none answers, the command shows this installation's own
templates and translators instead and says so on stderr; ``shoal exec --help`` does the same
in a shorter time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import click

from shoal.errors import ShoalError

from .output import FORMATS, echo_data
from .settings import ClientSettings, load_client_settings

HELP_TIMEOUT = 2.0
"""Seconds ``shoal exec --help`` waits for a requester before it shows the local types."""


@dataclass(frozen=True)
class Catalogue:
    """Job types and where they came from: ``cluster``, or ``local`` with the reason."""

    data: dict[str, Any]
    source: str
    why_local: str = ""


def local_catalogue(settings: ClientSettings) -> dict[str, Any]:
    """The job types of this installation: its templates that it has a translator for."""
    from shoal.requester.jobtypes import catalogue
    from shoal.requester.translate import default_registry

    return catalogue(default_registry(), settings.template_dirs)


def fetch(settings: ClientSettings, timeout: float | None = None) -> Catalogue:
    """Ask a requester (within ``timeout`` seconds, else the settings' own); the local job
    types when none answers."""
    if timeout is not None:
        settings = replace(settings, rpc_timeout=timeout, connect_timeout=timeout)

    async def ask() -> dict[str, Any]:
        from .session import open_session

        async with open_session(settings) as session:
            answer: dict[str, Any] = await session.api("job-types")
            return answer

    try:
        return Catalogue(asyncio.run(ask()), "cluster")
    except ShoalError as error:
        reason = f"{type(error).__name__}: {error.message}"
        return Catalogue(local_catalogue(settings), "local", reason)


def option_text(option: dict[str, Any]) -> str:
    """``--version=3.11 (3.11|3.12)``: an option, its default and the values it accepts."""
    text = f"--{option['name']}"
    if option.get("default") is not None:
        text += f"={option['default']}"
    if option.get("choices"):
        text += f" ({'|'.join(option['choices'])})"
    return text


@click.command("job-types", short_help="The job types the cluster runs, and their options.")
@click.option("--output-format", type=click.Choice(("table", *FORMATS)), default="table")
@click.pass_context
def job_types_command(ctx: click.Context, output_format: str) -> None:
    """List the job types that `shoal exec TYPE` can submit: those a requester of the
    cluster translates, with each one's engine, template options (`--NAME=VALUE` on `shoal
    exec`, default and accepted values) and description. When no requester answers, the
    job types of this installation are shown instead, with a note on stderr.

    \b
    Example:
      shoal job-types
      shoal job-types --output-format json
    """
    from .listing import table

    found = fetch(load_client_settings(ctx))
    if found.source == "local":
        click.echo(
            f"note: no requester answered ({found.why_local}); "
            "showing this installation's job types",
            err=True,
        )
    if output_format != "table":
        echo_data({"source": found.source, **found.data}, output_format)
        return
    rows = [
        (
            kind["name"],
            kind["engine"],
            " ".join(option_text(o) for o in kind["options"]) or "-",
            kind["description"],
        )
        for kind in found.data["job_types"]
    ]
    table(("TYPE", "ENGINE", "OPTIONS", "DESCRIPTION"), rows)
    if found.data.get("untranslated"):
        names = ", ".join(found.data["untranslated"])
        click.echo(
            f"note: templates without a translator (refused if submitted): {names}", err=True
        )
