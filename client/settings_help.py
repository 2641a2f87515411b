"""The settings section of ``shoal serve requester|executor --help``, generated from the
service's pydantic-settings class, so the help lists every variable and its real default.

The class (and pydantic) is imported only when the help is shown.
"""

from __future__ import annotations

import enum
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shoal.units import parse_duration, parse_memory

if TYPE_CHECKING:  # pydantic is loaded only when a service's help is shown
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo


def _shown(value: Any) -> str:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(_shown(v) for v in value) or "empty"
    if isinstance(value, Path):
        return str(value)
    return str(value) if value != "" else "empty"


def as_text(field: FieldInfo, value: Any) -> str:
    """``value`` in the form its parser takes: ``512Mi`` for sizes, ``90s`` for durations."""
    parsers = {getattr(m, "func", None) for m in field.metadata}
    if parse_memory in parsers and isinstance(value, int) and value:
        for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
            if value % size == 0:
                return f"{value // size}{unit}"
    if parse_duration in parsers and isinstance(value, int | float):
        return f"{value:g}s"
    return _shown(value)


def sections(settings_class: type[BaseModel]) -> list[tuple[str, list[str]]]:
    """A settings class's field names by section: ``("", the general ones)``, then for each
    base class naming a ``SECTION`` (the settings only the Docker engine reads) its heading
    and its fields. Sections only group: every variable is ``PREFIX<NAME>`` alike."""
    from pydantic import BaseModel as Model

    named = [
        (str(vars(base)["SECTION"]), list(base.model_fields))
        for base in settings_class.__mro__
        if "SECTION" in vars(base) and issubclass(base, Model)
    ]
    grouped = {name for _, names in named for name in names}
    general = [name for name in settings_class.model_fields if name not in grouped]
    return [("", general), *named]


def settings(
    settings_class: type[BaseModel], names: list[str] | None = None
) -> list[tuple[str, str, str, bool]]:
    """``(SHOAL_NAME, default, description, computed)`` for the fields ``names`` of a
    settings class (default: all, by section); ``computed``: the default is worked out when
    the process starts (so it depends on the host: the CPU count, the host name)."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    if names is None:
        names = [name for _, section in sections(settings_class) for name in section]
    found = []
    for name in names:
        field = settings_class.model_fields[name]
        default = as_text(field, field.get_default(call_default_factory=True, validated_data={}))
        factory = field.default_factory
        computed = factory is not None and factory not in (list, dict)
        description = (field.description or "").rstrip(".")
        found.append(((prefix + name).upper(), default, description, computed))
    return found


def settings_rows(
    settings_class: type[BaseModel], names: list[str] | None = None
) -> list[tuple[str, str]]:
    """``(SHOAL_NAME, "description [default: value]")`` for ``--help``."""
    rows = []
    for env, default, description, computed in settings(settings_class, names):
        where = " on this host" if computed else ""
        rows.append((env, f"{description} [default{where}: {default}]".lstrip()))
    return rows


def markdown_table(
    settings_class: type[BaseModel], computed: dict[str, str], names: list[str] | None = None
) -> str:
    """The settings (``names``, default all) as a Markdown table for the README; ``computed``
    says in words what each host-dependent default is (``SHOAL_SLOTS``: "the CPU count")."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for env, default, description, is_computed in settings(settings_class, names):
        shown = f"`{default}`" if default not in ("empty", "none") else default
        shown = computed.get(env, "computed at start") if is_computed else shown
        lines.append(f"| `{env}` | {shown} | {description.replace('|', '/')} |")
    return "\n".join(lines)


class SettingsCommand(click.Command):
    """A command whose help ends with the settings of ``settings`` (``module:Class``)."""

    def __init__(self, *args: Any, settings: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        module, name = self.settings.split(":")
        settings_class = getattr(importlib.import_module(module), name)
        for heading, names in sections(settings_class):
            title = f"Settings, {heading}" if heading else "Settings"
            with formatter.section(f"{title} (environment variables)"):
                formatter.write_dl(settings_rows(settings_class, names))
