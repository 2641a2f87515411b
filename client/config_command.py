"""``shoal config show [client|requester|executor]``: the effective settings, and where each
came from.

Each setting is shown as the process would use it here: from ``--broker`` or a profile of
the config file (the broker URL only, ``shoal.client.profiles``), from its ``SHOAL_*`` environment
variable, or the default. Secrets are masked: the password in any URL (the broker's, the
store's, a proxy's) and the value of any setting named like a password, token or secret.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from shoal.brokerurl import MASK, redact

from .output import FORMATS, echo_data

SECRET_NAME = re.compile(r"password|token|secret", re.IGNORECASE)
SERVICES = {
    "requester": "shoal.requester.settings:RequesterSettings",
    "executor": "shoal.executor.settings:ExecutorSettings",
}


@dataclass(frozen=True)
class Setting:
    """One effective setting: its variable, value (masked) and source."""

    name: str
    variable: str
    value: Any
    shown: str
    source: str


def masked(name: str, value: Any) -> Any:
    """``value`` of setting ``name`` safe to print."""
    secret = getattr(value, "get_secret_value", None)
    if secret is not None:
        value = secret()
    if isinstance(value, str):
        if SECRET_NAME.search(name):
            return MASK if value else value
        return redact(value)
    if isinstance(value, list):
        return [masked(name, item) for item in value]
    return value


def _source(variable: str, environ: Mapping[str, str]) -> str | None:
    for key in environ:
        if key.upper() == variable:
            return f"environment ({key})"
    return None


def _broker_source(choice_source: str) -> str:
    if choice_source == "SHOAL_BROKER_URL":
        return "environment (SHOAL_BROKER_URL)"
    if choice_source == "the default":
        return "default"
    return choice_source


def service_settings(ctx: click.Context, role: str, environ: Mapping[str, str]) -> list[Setting]:
    """The effective settings of ``shoal serve ROLE`` started here, each with its source."""
    import importlib

    from shoal.client.serve_command import load_service_settings
    from shoal.client.settings_help import as_text, sections

    from .profiles import choose_broker

    module, name = SERVICES[role].split(":")
    settings_class = getattr(importlib.import_module(module), name)
    settings = load_service_settings(ctx, settings_class)
    root = ctx.find_root().params or {}
    choice = choose_broker(root.get("broker"), root.get("profile"), environ)
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    found = []
    for field_name in [name for _, names in sections(settings_class) for name in names]:
        field = settings_class.model_fields[field_name]
        variable = (prefix + field_name).upper()
        if field_name == "broker_url":
            source = _broker_source(choice.source)
        else:
            source = _source(variable, environ) or "default"
        raw = getattr(settings, field_name)
        value = masked(field_name, _plain(raw))
        shown = masked(field_name, as_text(field, raw))
        found.append(Setting(field_name, variable, value, str(shown), source))
    return found


def client_settings(ctx: click.Context, environ: Mapping[str, str]) -> list[Setting]:
    """The effective settings of the ``shoal`` command here, each with its source."""
    from .profiles import choose_broker
    from .settings import ClientSettings, load_client_settings

    settings = load_client_settings(ctx, environ)
    root = ctx.find_root().params or {}
    choice = choose_broker(root.get("broker"), root.get("profile"), environ)
    found = []
    for field in fields(ClientSettings):
        variable = f"SHOAL_{field.name.upper()}"
        raw = getattr(settings, field.name)
        if field.name == "broker_url":
            source = _broker_source(choice.source)
        else:
            source = _source(variable, environ) or "default"
        value = masked(field.name, _plain(raw))
        shown = ":".join(value) if isinstance(value, list) else str(value)
        found.append(Setting(field.name, variable, value, shown or "empty", source))
    return found


def _plain(value: Any) -> Any:
    """``value`` as JSON data (a secret unwrapped: :func:`masked` comes next)."""
    secret = getattr(value, "get_secret_value", None)
    if secret is not None:
        return secret()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@click.group("config", short_help="Show the effective settings and where they came from.")
def config_group() -> None:
    """Look at Shoal's settings as a process started here would use them."""


@config_group.command("show")
@click.argument(
    "component", type=click.Choice(("client", *SERVICES)), default="client", required=False
)
@click.option("--output-format", type=click.Choice(("table", *FORMATS)), default="table")
@click.pass_context
def show_command(ctx: click.Context, component: str, output_format: str) -> None:
    """Print every setting of COMPONENT (client: the `shoal` command, the default;
    requester or executor: `shoal serve …` started in this environment) with its value and
    where it came from: --broker, a profile of the config file, its SHOAL_* environment
    variable, or the default. Passwords in URLs and secret values are masked.

    \b
    Example:
      shoal config show
      SHOAL_SLOTS=4 shoal config show executor --output-format json
    """
    from .listing import table

    environ = os.environ
    found = (
        client_settings(ctx, environ)
        if component == "client"
        else service_settings(ctx, component, environ)
    )
    if output_format != "table":
        rows = [
            {"setting": s.name, "variable": s.variable, "value": s.value, "source": s.source}
            for s in found
        ]
        echo_data({"component": component, "settings": rows}, output_format)
        return
    table(("VARIABLE", "VALUE", "SOURCE"), [(s.variable, s.shown, s.source) for s in found])
