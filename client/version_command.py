"""``shoal version``: what this client is and which broker it would talk to.

Offline and instant: it reports the client only. Requesters answer messages of their own
wire schema version and refuse others with a one-line ``ProtocolError``, so a mismatch
shows on the first command that reaches one.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

import click

from shoal.brokerurl import redact


@click.command("version", short_help="Versions of this client and its wire protocol.")
@click.pass_context
def version_command(ctx: click.Context) -> None:
    """The client's version, its wire schema version, Python's, and the broker URL in use
    (password hidden) with where it came from."""
    from shoal.wire import SCHEMA_VERSION

    from .profiles import choose_broker
    from .settings import DEFAULT_BROKER_URL

    root = ctx.find_root().params or {}
    choice = choose_broker(root.get("broker"), root.get("profile"), os.environ)
    click.echo(f"shoal {client_version()}")
    click.echo(f"wire schema: {SCHEMA_VERSION}")
    click.echo(f"python: {platform.python_version()}")
    click.echo(f"broker: {redact(choice.url or DEFAULT_BROKER_URL)} ({choice.source})")


def client_version() -> str:
    """The installed package's version, or a note when Shoal runs from a source tree."""
    try:
        return version("shoal")
    except PackageNotFoundError:
        return "unknown (run from a source tree, not installed)"
