"""``shoal serve requester|executor``: run one of Shoal's services in the foreground.

The services' modules are imported only when their command runs, so the rest of the CLI
never loads SQLAlchemy or aiodocker.
"""

from __future__ import annotations

import importlib
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


def _with_broker(ctx: click.Context, settings: S) -> S:
    from pydantic import SecretStr

    broker = (ctx.find_root().params or {}).get("broker")
    if broker:
        return settings.model_copy(update={"broker_url": SecretStr(broker)})
    return settings


@click.group("serve", short_help="Run a requester or an executor.")
def serve_group() -> None:
    """Run one of Shoal's services until SIGTERM/SIGINT (a second signal exits at once)."""


@serve_group.command(
    "requester", cls=SettingsCommand, settings="requester.settings:RequesterSettings"
)
@click.pass_context
def serve_requester(ctx: click.Context) -> None:
    """Consume submissions, record job events, answer `shoal job` queries.

    Configured by the SHOAL_* variables below. SHOAL_DATABASE_URL picks the job store:
    SQLite (the default, one requester) or postgresql+asyncpg://USER@HOST/DB (several
    requesters).
    """
    from requester.service import run
    from requester.settings import RequesterSettings

    ctx.exit(run(_with_broker(ctx, RequesterSettings())))


@serve_group.command("executor", cls=SettingsCommand, settings="executor.settings:ExecutorSettings")
@click.pass_context
def serve_executor(ctx: click.Context) -> None:
    """Consume the compute queue and run jobs in Docker (configured by the SHOAL_* variables
    below).

    A second stack on the same Docker host needs its own SHOAL_NODE_ID, SHOAL_HTTP_NETWORK
    and SHOAL_PROXY_PORT (or 0, any free port).
    """
    settings_class: type[CommonSettings] = _load("executor.settings", "ExecutorSettings")
    run: Callable[[CommonSettings], int] = _load("executor.service", "run")
    ctx.exit(run(_with_broker(ctx, settings_class())))
