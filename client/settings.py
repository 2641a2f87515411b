"""The CLI's settings: ``SHOAL_*`` environment variables, overridden by flags."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import Field, SecretStr

from shoal.settings import CommonSettings


class ClientSettings(CommonSettings):
    """What the ``shoal`` command needs."""

    template_dirs: list[Path] = Field(
        default_factory=list, description="Operator folders of extra job-type templates"
    )
    rpc_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a reply")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to reach the broker")


def load_client_settings(ctx: click.Context) -> ClientSettings:
    """Settings from the environment, with the ``--broker`` flag applied."""
    settings = ClientSettings()
    broker = (ctx.find_root().params or {}).get("broker")
    if broker:
        settings = settings.model_copy(update={"broker_url": SecretStr(broker)})
    return settings
