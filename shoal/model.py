"""The job model: pydantic v2 models with snake_case JSON, frozen once built.

Validation errors are turned into one readable line per problem by :func:`describe_errors`,
naming the field the way a user wrote it: ``tasks[0].inputs[1].target: must be an absolute
path``.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import uuid
from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shoal.blobs import by_content, check_params
from shoal.errors import InvalidJobError
from shoal.units import parse_cpu, parse_duration, parse_memory

JOB_ID = re.compile(r"j-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")

NATIVE_ENGINES = frozenset({"docker", "wasm"})
"""Engines an executor runs as they are; every other engine type is translated."""

INPUT_TYPES = frozenset({"inline", "url", "local", "blob"})


def new_job_id() -> str:
    """A fresh ``j-<uuid4>`` job ID."""
    return f"j-{uuid.uuid4()}"


def derived_job_id(seed: str) -> str:
    """A ``j-<uuid4>``-shaped ID that is always the same for the same ``seed``.

    The requester names a translated job after its submission this way, so a redelivered
    submission can never become a second job.
    """
    digest = bytearray(hashlib.sha256(seed.encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x40  # version 4, as uuid.UUID(bytes=…, version=4) sets
    digest[8] = digest[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"j-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobState(StrEnum):
    """Where a job is in its life; see :data:`TERMINAL_STATES`."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    TRANSLATED = "translated"


TERMINAL_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.STOPPED, JobState.TRANSLATED}
)

STATE_ORDER = {
    JobState.PENDING: 0,
    JobState.QUEUED: 1,
    JobState.RUNNING: 2,
    JobState.COMPLETED: 3,
    JobState.FAILED: 3,
    JobState.STOPPED: 3,
    JobState.TRANSLATED: 3,
}
"""Rank of each state: a recorded state never moves to a lower or equal terminal rank."""


def _absolute_path(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    normal = posixpath.normpath(value)
    if normal.startswith("//"):
        normal = normal[1:]
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    return normal


def _optional(parse: Any) -> Any:
    def convert(value: Any) -> Any:
        return None if value is None or value == "" else parse(value)

    return convert


RESERVED_ROOTS = frozenset({"proc", "sys", "dev"})
"""Top-level folders of a container that never hold a job's inputs or outputs."""


def _container_path(value: str) -> str:
    normal = _absolute_path(value)
    top = normal.strip("/").split("/")[0]
    if not top:
        raise ValueError("must be a folder or file below /, not / itself")
    if top in RESERVED_ROOTS:
        raise ValueError(f"must not be under /{top} (reserved by the container runtime)")
    return normal


ContainerPath = Annotated[str, BeforeValidator(_container_path)]
"""Where an input is placed or an output read: absolute, no ``..``, under an allowed root."""
Seconds = Annotated[float | None, BeforeValidator(_optional(parse_duration))]
Bytes = Annotated[int | None, BeforeValidator(_optional(parse_memory))]
Cores = Annotated[float | None, BeforeValidator(_optional(parse_cpu))]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class SpecConfig(_Model):
    """A typed bag of parameters: an engine or an input source."""

    type: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class DockerParams(_Model):
    """What a ``docker`` engine's params must hold."""

    image: str = Field(min_length=1)
    entrypoint: list[str] = Field(default_factory=list)
    parameters: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    dep_cache: bool = False
    """Build the python requirements the job's ``/code`` declares once per node and mount
    them read-only (the executor's dependency cache); the python job type's translator sets
    it. Without it the job installs its own, if any."""


class WasmParams(_Model):
    """What a ``wasm`` engine's params must hold: a ``module`` or a ``runtime``."""

    module: str = Field(default="", pattern=r"^(/code/.*)?$")
    """The WASI module to run, a file under ``/code``."""
    runtime: Literal["python"] | None = None
    """Instead of a module: an interpreter the executor provides (``python``: CPython)."""
    parameters: list[str] = Field(default_factory=list)
    """Its argv after its own name."""
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_module(self) -> WasmParams:
        if bool(self.module) == (self.runtime is not None):
            raise ValueError("give either a module under /code or a runtime, not both")
        return self


class InputSource(_Model):
    """Data placed in the container before it starts."""

    source: SpecConfig
    alias: str | None = None
    target: ContainerPath

    @model_validator(mode="after")
    def _source_known(self) -> InputSource:
        kind = self.source.type
        if kind not in INPUT_TYPES:
            raise ValueError(f"source type {kind!r} is not one of {', '.join(sorted(INPUT_TYPES))}")
        if kind == "blob":
            check_params(self.source.params)
            return self
        required = {"inline": "data", "url": "url", "local": "path"}[kind]
        if not isinstance(self.source.params.get(required), str):
            raise ValueError(f"a {kind} source needs a string params.{required}")
        if kind == "url" and not str(self.source.params["url"]).startswith(("http://", "https://")):
            raise ValueError("a url source must start with http:// or https://")
        return self


def checked_output_name(value: str) -> str:
    """``value`` if it can name an output: one path segment (never absolute, never ``..``).

    Checked by the model, by the store when it records a ``result`` event, and by ``shoal job
    get`` before it makes ``DIR/NAME``; ``ValueError`` otherwise.
    """
    if not _NAME.fullmatch(value):
        raise ValueError(
            "must start with a letter or digit and hold only [A-Za-z0-9_.-] (at most 128)"
        )
    return value


class ResultPath(_Model):
    """A folder read back from the container after it exits."""

    name: str
    path: ContainerPath

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return checked_output_name(value)


class Resources(_Model):
    """Limits asked for by the job; the executor applies node defaults and maxima."""

    cpu: Cores = None
    memory: Bytes = None
    disk: Bytes = None
    gpu: int = Field(default=0, ge=0)


class NetworkType(StrEnum):
    """How much network a job gets."""

    NONE = "none"
    HTTP = "http"
    FULL = "full"


class Network(_Model):
    """The job's network: none, full, or HTTP(S) to an allow-list of domains."""

    type: NetworkType = NetworkType.NONE
    domains: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _domains_need_http(self) -> Network:
        if self.domains and self.type is not NetworkType.HTTP:
            raise ValueError("domains are only used with network type http")
        return self


class Timeouts(_Model):
    """Seconds a job may spend running, waiting in the queue, and in all; and ``grace``, the
    seconds between SIGTERM and SIGKILL when it is stopped or times out (``None``: the
    executor's default)."""

    execution: Seconds = None
    queue: Seconds = None
    total: Seconds = None
    grace: Seconds = Field(default=None, exclude_if=lambda grace: grace is None)
    """Left out of the serialized form while unset: jobs read the same as before it
    existed, to components that do not know it."""


RETRY_KINDS = ("lost", "engine", "exit")
"""Failures a job may ask to be retried on: its executor was lost, the executor or Docker
engine failed (``executor error``), or its command exited non-zero."""
MAX_RETRIES = 10


class Retries(_Model):
    """How often a failed run is tried again, on which failures, after how long.

    ``attempts`` more runs at most (0: none, the default). ``on`` names the failure kinds of
    :data:`RETRY_KINDS`; a non-zero exit is retried only when ``exit`` is listed. The n-th
    retry waits ``backoff * 2**(n-1)`` seconds, at most ``backoff_max``, with up to a quarter
    of it added at random (jitter).
    """

    attempts: int = Field(default=0, ge=0, le=MAX_RETRIES)
    on: list[str] = Field(default_factory=lambda: ["lost", "engine"])
    backoff: Seconds = 5.0
    backoff_max: Seconds = 300.0

    @field_validator("on")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        kinds = [kind.strip().lower() for kind in value]
        unknown = sorted(set(kinds) - set(RETRY_KINDS))
        if unknown:
            raise ValueError(
                f"unknown failure kind {', '.join(unknown)}: use {', '.join(RETRY_KINDS)}"
            )
        return list(dict.fromkeys(kinds))

    @model_validator(mode="after")
    def _backoff_cap(self) -> Retries:
        if self.backoff is None or self.backoff_max is None:
            raise ValueError("backoff and backoff_max need a duration")
        if self.backoff_max < self.backoff:
            raise ValueError("backoff_max must not be below backoff")
        return self

    def delay(self, retry: int, jitter: float) -> float:
        """Seconds before retry number ``retry`` (1 for the first); ``jitter`` in [0, 1)."""
        assert self.backoff is not None
        assert self.backoff_max is not None
        base: float = min(self.backoff * 2.0 ** (retry - 1), self.backoff_max)
        return base * (1 + jitter / 4)


NO_RETRIES = Retries()
"""The default: no retry."""


def _asks_none(retries: Retries) -> bool:
    """Whether ``retries`` is the default (compared field by field: a model's ``==`` costs
    more, and this runs on every serialization of a task)."""
    return retries.attempts == 0 and retries.__dict__ == NO_RETRIES.__dict__


def _default_outputs() -> list[ResultPath]:
    return [ResultPath(name="outputs", path="/outputs")]


def _duplicates(values: list[str]) -> list[str]:
    if len(set(values)) == len(values):
        return []
    return sorted(v for v, n in Counter(values).items() if n > 1)


class Task(_Model):
    """The one unit of work in a job."""

    name: str = "main"
    engine: SpecConfig
    env: dict[str, str] = Field(default_factory=dict)
    meta: dict[str, str] = Field(default_factory=dict)
    inputs: list[InputSource] = Field(default_factory=list)
    outputs: list[ResultPath] = Field(default_factory=_default_outputs)
    resources: Resources = Field(default_factory=Resources)
    network: Network | None = None
    """``None`` leaves the choice to the job type (the translator); native jobs get none."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: Retries = Field(default_factory=Retries, exclude_if=_asks_none)
    """Left out of the serialized form while it asks for none: jobs read the same as before
    it existed, to components that do not know it."""

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Task:
        checks = {}
        if len(self.inputs) > 1:  # one input or output cannot repeat itself
            checks["input aliases"] = [i.alias for i in self.inputs if i.alias]
            checks["input targets"] = [i.target for i in self.inputs]
        if len(self.outputs) > 1:
            checks["output names"] = [o.name for o in self.outputs]
            checks["output paths"] = [o.path for o in self.outputs]
        for what, values in checks.items():
            dupes = _duplicates(values)
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        if self.engine.type == "docker":
            try:
                DockerParams.model_validate(self.engine.params)
            except ValidationError as error:
                raise ValueError(f"engine.params.{describe_errors(error)}") from None
        return self


SHOAL_META_PREFIX = "shoal."


def submitted_spec(job: Job) -> dict[str, Any]:
    """What a submitter chose for ``job`` (not its ID, times, state, owner, nor Shoal's own
    ``shoal.*`` meta): two submissions under one idempotency key are the same job only when
    these are equal. An archive counts by its content: inline or as a blob, the same."""
    data = job.model_dump(
        mode="json", include={"name", "namespace", "type", "labels", "meta", "tasks"}
    )
    data["meta"] = {k: v for k, v in data["meta"].items() if not k.startswith(SHOAL_META_PREFIX)}
    for task in data["tasks"]:
        for item in task["inputs"]:
            item["source"] = by_content(item["source"])
    return data


class Job(_Model):
    """A job as submitted, stored and run."""

    id: str = Field(default_factory=new_job_id)
    name: str = ""
    namespace: str = "default"
    owner: str = ""
    """The submitting user: set by the requester from the submission's broker-checked
    ``user_id``, whatever the client wrote here."""
    type: Literal["batch"] = "batch"
    labels: dict[str, str] = Field(default_factory=dict)
    meta: dict[str, str] = Field(default_factory=dict)
    tasks: list[Task] = Field(min_length=1, max_length=1)
    created_at: datetime = Field(default_factory=_utcnow)
    state: JobState = JobState.PENDING

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not JOB_ID.fullmatch(value):
            raise ValueError("must look like j-<uuid4>")
        return value

    @field_validator("tasks", mode="before")
    @classmethod
    def _one_task(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError(f"a job has exactly one task, got {len(value)}")
        return value

    @property
    def task(self) -> Task:
        """The job's single task."""
        return self.tasks[0]

    @property
    def engine_type(self) -> str:
        """The engine of the job's task, i.e. its job type."""
        return self.task.engine.type


def describe_errors(error: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``field.path: message`` (paths below ``prefix`` if given)."""
    lines = []
    for item in error.errors(include_url=False):
        path = prefix
        for part in item["loc"]:
            if isinstance(part, int) or not _PLAIN_KEY.fullmatch(part):
                path += f"[{part!r}]"  # quoted: a key may hold dots, quotes or newlines
            else:
                path += f".{part}" if path else part
        message = str(item["msg"]).removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)


def parse_job(data: Any) -> Job:
    """Validate ``data`` (a dict or JSON text) as a :class:`Job`, raising ``InvalidJobError``."""
    try:
        if isinstance(data, str | bytes):
            return Job.model_validate_json(data)
        return Job.model_validate(data)
    except ValidationError as error:
        raise InvalidJobError(f"invalid job: {describe_errors(error)}") from None
