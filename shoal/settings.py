"""Settings shared by every process, read from ``SHOAL_*`` environment variables.

Each process defines one settings class deriving from :class:`CommonSettings`, loads it once
at its entry point and passes it down; nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"


def data_dir() -> Path:
    """The user's data directory for Shoal (``$XDG_DATA_HOME/shoal``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "shoal"


class CommonSettings(BaseSettings):
    """What every Shoal process needs: where the broker is."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_", extra="ignore")

    broker_url: SecretStr = Field(
        default=SecretStr(DEFAULT_BROKER_URL),
        description=(
            "AMQP URL of RabbitMQ, or a comma-separated list of a cluster's nodes (one user "
            "and vhost): the first that answers, the next after a drop"
        ),
    )
    log_format: str = Field(default="auto", description="auto (console on a TTY), json or console")
    log_level: str = Field(default="info", description="debug, info, warning or error")


class ServiceSettings(CommonSettings):
    """What every ``shoal serve`` process has besides: its metrics and health port."""

    metrics_port: Annotated[int, Field(ge=0, le=65535)] | Literal["auto"] = Field(
        default=0,
        description="Port of /metrics, /livez and /readyz (shoal.metrics); 0: off; auto: "
        "one the system picks (written to SHOAL_METRICS_PORT_FILE)",
    )
    metrics_port_file: Path | None = Field(
        default=None,
        description="File the metrics port is written to once listening, removed at exit "
        "(for a health check to read when the port is auto)",
    )
    heartbeat_every: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between heartbeats (shoal status); a service that misses 3 "
        "drops out of the view",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the metrics port listens on (0.0.0.0 in a container)",
    )
