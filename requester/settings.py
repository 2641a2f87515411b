"""The requester's settings: ``SHOAL_*`` environment variables, loaded once by ``run``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from shoal.broker import broker_user
from shoal.settings import ServiceSettings, data_dir
from shoal.units import parse_duration, parse_memory

from .access import Access, namespace_members, user_list
from .admission import DEFAULT_MAX_JOB_MEMORY, Admission


def default_database_url() -> str:
    """SQLite in the user's data directory: the embedded default for one requester."""
    return f"sqlite+aiosqlite:///{data_dir() / 'jobs.sqlite3'}"


def parse_retention(value: object) -> object:
    """A duration such as ``30d`` in seconds; ``0`` (keep for ever) as it is."""
    if isinstance(value, str) and value.strip() not in ("", "0"):
        return parse_duration(value)
    return value


class RequesterSettings(ServiceSettings):
    """What ``shoal serve requester`` needs.

    ``database_url`` picks the job store: ``sqlite+aiosqlite:///PATH`` (default, one requester)
    or ``postgresql+asyncpg://USER@HOST/DB`` (several requester replicas).
    """

    database_url: str = Field(
        default_factory=default_database_url,
        description="The job store: sqlite+aiosqlite:///PATH (one requester) or "
        "postgresql+asyncpg://USER@HOST/DB (several requesters)",
    )
    name: str = Field(
        default_factory=lambda: f"requester@{socket.gethostname()}",
        description="This requester's name in its logs and broker connection",
    )
    submit_prefetch: int = Field(
        default=256,
        ge=1,
        description="Submission messages handled at once (a batch counts once)",
    )
    events_prefetch: int = Field(default=128, ge=1, description="Job events recorded at once")
    api_prefetch: int = Field(default=16, ge=1, description="API queries answered at once")
    log_limit_bytes: int = Field(
        default=1024 * 1024, ge=0, description="Log bytes kept per job and stream"
    )
    output_limit_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        description="Bytes of one result archive (tar.gz) kept per job and result name",
    )
    max_job_memory: Annotated[int, BeforeValidator(parse_memory)] = Field(
        default=DEFAULT_MAX_JOB_MEMORY,
        gt=0,
        description="Most memory a job may ask for (the largest executor's SHOAL_MAX_MEMORY); "
        "more is refused at submission",
    )
    queue_depth_every: float = Field(
        default=5.0, gt=0, description="Seconds between reads of the queues' depth (metrics on)"
    )
    template_dirs: str = Field(
        default="",
        description="Folders of operator job-type templates, separated by ':' (as the CLI's "
        "SHOAL_TEMPLATE_DIRS): `shoal job-types` lists the ones this requester translates",
    )
    list_limit: int = Field(default=50, ge=1, description="Jobs `job list` shows by default")
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to reach the broker")
    reconnect_interval: float = Field(
        default=1.0, gt=0, description="Seconds between reconnection attempts after a drop"
    )
    shutdown_grace: float = Field(
        default=10.0, ge=0, description="Seconds in-flight deliveries get to finish on shutdown"
    )
    retry_base_delay: float = Field(
        default=0.2, ge=0, description="First delay before a transient failure is retried"
    )
    retry_max_delay: float = Field(
        default=5.0, ge=0, description="Longest delay before a transient failure is retried"
    )
    sweep_interval: float = Field(
        default=2.0, gt=0, description="Seconds between sweeps for jobs past their timeouts"
    )
    claim_grace: float = Field(
        default=30.0,
        ge=0,
        description="Seconds after this requester starts, reconnects or fails a claim request "
        "during which a live executor whose lease lapsed keeps its run (its renewals had "
        "nowhere to go); more than the executors' SHOAL_CLAIM_RENEW_EVERY + SHOAL_CLAIM_TIMEOUT",
    )
    resend_every: float = Field(
        default=120.0,
        gt=0,
        description="Seconds after which a compute message the sweeper sent is sent again "
        "while no execution claim holds its job (the copy was lost or skipped)",
    )
    retention: Annotated[float, BeforeValidator(parse_retention)] = Field(
        default=0.0,
        ge=0,
        description="How long the history of an ended job (spec, logs, outputs) is kept, "
        "e.g. 30d; 0 keeps it for ever",
    )
    operator_users: str = Field(
        default="", description="Comma list of users who see every job (besides the requester)"
    )
    executor_users: str = Field(
        default="",
        description="Comma list of accounts whose job events are recorded (besides the "
        "requester's own)",
    )
    namespace_members: str = Field(
        default="",
        description="Closed namespaces and their members: team=alice+bob,other=carol",
    )

    @field_validator("namespace_members")
    @classmethod
    def _members(cls, value: str) -> str:
        namespace_members(value)
        return value

    def template_folders(self) -> list[Path]:
        """The folders of :attr:`template_dirs`."""
        return [Path(part) for part in self.template_dirs.split(os.pathsep) if part.strip()]

    def admission(self) -> Admission:
        """The limits on what a job may ask for (``shoal.requester.admission``)."""
        return Admission(max_memory=self.max_job_memory)

    def access(self) -> Access:
        """The access rules these settings describe (the requester's account is trusted)."""
        return Access(
            requester=broker_user(self.broker_url.get_secret_value()),
            operators=user_list(self.operator_users),
            executors=user_list(self.executor_users),
            namespaces=namespace_members(self.namespace_members),
        )
