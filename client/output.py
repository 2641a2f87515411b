"""Printing results for people and for scripts (``--output-format json|yaml``)."""

from __future__ import annotations

import json
from typing import Any

import click

FORMATS = ("json", "yaml")


def dump(data: Any, fmt: str) -> str:
    """``data`` (JSON-ready) as ``fmt`` text."""
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True)).rstrip("\n")
    return json.dumps(data, indent=2, ensure_ascii=False)


def echo_data(data: Any, fmt: str) -> None:
    """Print ``data`` as ``fmt`` on stdout."""
    click.echo(dump(data, fmt))
