"""``shoal serve requester|executor``: run one of Shoal's services in the foreground.

The services' modules are imported only when their command runs, so the rest of the CLI
never loads SQLAlchemy or aiodocker.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from shoal.errors import UsageError

from .settings_help import SettingsCommand

if TYPE_CHECKING:  # pydantic-settings is loaded only when a service starts
    from shoal.settings import CommonSettings

S = TypeVar("S", bound="CommonSettings")


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise UsageError(
            f"{module}.{name} is not available in this installation: {error}"
        ) from None


def load_service_settings(ctx: click.Context, settings_class: type[S]) -> S:
    """The service's settings from ``SHOAL_*`` variables, the broker URL chosen as for every
    command (``shoal.client.profiles``); a bad value is a ``UsageError`` naming its variable."""
    from pydantic import SecretStr, ValidationError

    from .profiles import choose_broker

    try:
        settings = settings_class()
    except ValidationError as error:
        raise UsageError(
            "; ".join(
                f"{_variable(problem['loc'])}: {problem['msg']}, got {problem.get('input')!r}"
                for problem in error.errors(include_url=False)
            )
        ) from None
    root = ctx.find_root().params or {}
    choice = choose_broker(root.get("broker"), root.get("profile"), os.environ)
    if choice.url is not None:
        settings = settings.model_copy(update={"broker_url": SecretStr(choice.url)})
    return settings


def _variable(loc: tuple[int | str, ...]) -> str:
    """The ``SHOAL_*`` variable a settings field is read from."""
    return f"SHOAL_{str(loc[0]).upper()}" if loc else "SHOAL_* settings"


@click.group("serve", short_help="Run a requester or an executor.")
def serve_group() -> None:
    """Run one of Shoal's services until SIGTERM/SIGINT (a second signal exits at once)."""


@serve_group.command(
    "requester", cls=SettingsCommand, settings="shoal.requester.settings:RequesterSettings"
)
@click.pass_context
def serve_requester(ctx: click.Context) -> None:
    """Consume submissions, record job events, answer `shoal job` queries.

    Configured by the SHOAL_* variables below. SHOAL_DATABASE_URL picks the job store:
    SQLite (the default, one requester) or postgresql+asyncpg://USER@HOST/DB (several
    requesters).
    """
    from shoal.requester.service import run
    from shoal.requester.settings import RequesterSettings

    ctx.exit(run(load_service_settings(ctx, RequesterSettings)))


@serve_group.command(
    "executor", cls=SettingsCommand, settings="shoal.executor.settings:ExecutorSettings"
)
@click.option(
    "--engines",
    metavar="LIST",
    help="Engines to serve, comma-separated: docker, wasm (overrides SHOAL_ENGINES; default: "
    "docker when its engine answers, and wasm).",
)
@click.pass_context
def serve_executor(ctx: click.Context, engines: str | None) -> None:
    """Consume the compute queue and run jobs in Docker containers or as WebAssembly
    modules (configured by the SHOAL_* variables below).

    A second stack on the same Docker host needs its own SHOAL_NODE_ID, SHOAL_HTTP_NETWORK
    and SHOAL_PROXY_PORT (or 0, any free port).
    """
    if engines is not None:
        os.environ["SHOAL_ENGINES"] = engines
    settings_class: type[CommonSettings] = _load("shoal.executor.settings", "ExecutorSettings")
    run: Callable[[CommonSettings], int] = _load("shoal.executor.service", "run")
    ctx.exit(run(load_service_settings(ctx, settings_class)))
