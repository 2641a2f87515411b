"""The CLI's settings: ``SHOAL_*`` environment variables, overridden by flags.

The services use pydantic-settings (``shoal.settings.CommonSettings``); the CLI reads its
five variables itself, because importing pydantic-settings costs every ``shoal exec`` about
50 ms. The semantics are the same: the ``SHOAL_`` prefix, names matched case-insensitively,
``SHOAL_TEMPLATE_DIRS`` a JSON list (or, for convenience, ``os.pathsep``-separated paths),
a bad value an error naming the variable. The broker URL may also come from ``--broker`` or
a profile of the config file (``shoal.client.profiles``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from shoal.errors import UsageError

PREFIX = "SHOAL_"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Secret:
    """A string kept out of reprs and logs (the shape of pydantic's ``SecretStr``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The value itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ClientSettings:
    """What the ``shoal`` command needs."""

    broker_url: Secret = field(default_factory=lambda: Secret(DEFAULT_BROKER_URL))
    """AMQP URL of RabbitMQ, or a comma-separated list of a cluster's nodes."""
    template_dirs: list[Path] = field(default_factory=list)
    """Operator folders of extra job-type templates."""
    rpc_timeout: float = 10.0
    """Seconds to wait for a reply."""
    connect_timeout: float = 5.0
    """Seconds to reach the broker."""
    log_format: str = "auto"
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        """Settings from ``SHOAL_*`` variables (``UsageError`` naming a bad one)."""
        source = os.environ if environ is None else environ
        env = {k.upper(): v for k, v in source.items() if k.upper().startswith(PREFIX)}
        default = cls()
        url = env.get("SHOAL_BROKER_URL")
        dirs = env.get("SHOAL_TEMPLATE_DIRS")
        rpc = env.get("SHOAL_RPC_TIMEOUT")
        connect = env.get("SHOAL_CONNECT_TIMEOUT")
        return cls(
            broker_url=default.broker_url if url is None else Secret(url),
            template_dirs=[] if dirs is None else _paths("SHOAL_TEMPLATE_DIRS", dirs),
            rpc_timeout=default.rpc_timeout if rpc is None else _positive("SHOAL_RPC_TIMEOUT", rpc),
            connect_timeout=(
                default.connect_timeout
                if connect is None
                else _positive("SHOAL_CONNECT_TIMEOUT", connect)
            ),
            log_format=env.get("SHOAL_LOG_FORMAT", default.log_format),
            log_level=env.get("SHOAL_LOG_LEVEL", default.log_level),
        )


def _paths(name: str, text: str) -> list[Path]:
    if not text.strip():
        return []
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise UsageError(f"{name}: not a JSON list of paths: {error}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise UsageError(f"{name}: expected a JSON list of paths")
        return [Path(i) for i in items]
    return [Path(p) for p in text.split(os.pathsep) if p]


def _positive(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}: {text!r} is not a number") from None
    if not value > 0:
        raise UsageError(f"{name}: must be greater than 0, got {text!r}")
    return value


def load_client_settings(
    ctx: click.Context, environ: Mapping[str, str] | None = None
) -> ClientSettings:
    """Settings from the environment, the broker URL chosen by ``shoal.client.profiles`` from
    ``--broker``, ``--profile``, ``SHOAL_BROKER_URL``, ``SHOAL_PROFILE`` and the config file."""
    from .profiles import choose_broker

    source = os.environ if environ is None else environ
    settings = ClientSettings.from_env(source)
    root = ctx.find_root().params or {}
    choice = choose_broker(root.get("broker"), root.get("profile"), source)
    if choice.url is not None:
        settings = replace(settings, broker_url=Secret(choice.url))
    return settings
