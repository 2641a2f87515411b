"""Messages on the wire: pydantic models with a schema version, JSON bodies.

A body that is not JSON, has another schema version, or does not validate raises
``ProtocolError`` from :func:`decode`; the consumer then answers or dead-letters it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from shoal.errors import ProtocolError, ShoalError
from shoal.model import Job, JobState, checked_output_name, describe_errors
from shoal.names import event_key

SCHEMA_VERSION = 2
"""2: owners (``Job.owner``, ``JobEvent.owner``, event keys ``job.<owner>.<id>.<kind>``)."""
CONTENT_TYPE = "application/json"


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class WireError(BaseModel):
    """A typed error sent back to a caller; see ``shoal.errors.from_wire``."""

    type: str
    message: str

    @classmethod
    def of(cls, error: ShoalError) -> WireError:
        """The wire form of ``error``."""
        return cls(**error.to_wire())


class Message(BaseModel):
    """Base of every message: a schema version, unknown fields refused."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION


class Submission(Message):
    """``shoal.submit``: a job as the client built it."""

    job: Job
    idempotency_key: str | None = None


class SubmitReply(Message):
    """Answer to a submission: the job to follow (translated or not), or an error."""

    job_id: str | None = None
    original_id: str | None = None
    error: WireError | None = None


SUBMISSION_BATCH = "submission-batch"
"""The AMQP ``type`` of a ``shoal.submit`` message holding a :class:`SubmissionBatch`."""
MAX_BATCH_JOBS = 256
"""The most jobs one :class:`SubmissionBatch` may hold."""


class SubmissionBatch(Message):
    """``shoal.submit`` with ``type: submission-batch``: several submissions in one message,
    each handled as if sent alone (a bad one is refused, the others go on), answered by one
    :class:`SubmitBatchReply`. The body as a whole counts against the one-submission limit."""

    submissions: list[Submission] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class SubmitBatchReply(Message):
    """Answer to a :class:`SubmissionBatch`: one reply per submission, in order; or, for a
    batch refused whole (unreadable, too large), ``error`` and no replies."""

    replies: list[SubmitReply] = Field(default_factory=list)
    error: WireError | None = None


class ComputeRequest(Message):
    """``shoal.compute``: a runnable (docker) job for an executor."""

    job: Job
    submitted_at: datetime = Field(default_factory=utcnow)


_TIMESTAMP = TypeAdapter(datetime)


def compute_body(job_json: str, submitted_at: datetime) -> bytes:
    """``encode(ComputeRequest(job=job, submitted_at=submitted_at))`` for a job already
    serialized (``job_json`` is ``job.model_dump_json()``): the same bytes, without
    serializing the job again."""
    at = _TIMESTAMP.dump_json(submitted_at).decode()
    return f'{{"schema_version":{SCHEMA_VERSION},"job":{job_json},"submitted_at":{at}}}'.encode()


EventKind = Literal["state", "log", "result", "recorded"]
"""``recorded`` is the requester's: the store holds every event of the job's final run."""


class JobEvent(Message):
    """``shoal.events``, key ``job.<owner>.<id>.<kind>``: what happened to a job.

    Executors publish ``state``, ``log`` and ``result`` events, numbered by ``seq`` from 1 in
    each run; the terminal ``state`` event carries the run's last ``seq``, so the recorder
    knows when it holds all of them and then publishes ``recorded``.
    """

    job_id: str
    kind: EventKind
    owner: str = ""
    """The job's owner (``Job.owner``): a word of the routing key, see ``shoal.names``."""
    at: datetime = Field(default_factory=utcnow)
    seq: int = 0
    """Per job and executor, increasing: orders log chunks recorded by several requesters."""
    executor: str | None = None
    state: JobState | None = None
    exit_code: int | None = None
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    stream: Literal["stdout", "stderr"] | None = None
    data: str = ""
    outputs: dict[str, str] = Field(default_factory=dict)
    """Result name → base64 tar.gz of that folder (kind ``result``)."""
    truncated: bool = False
    lowered: list[str] = Field(default_factory=list, exclude_if=lambda lowered: not lowered)
    """Limits the executor lowered to its maxima, one line each (``cpu 64 → 2 (node
    maximum)``; a ``running`` event). Left out of the JSON while empty, so an event without it
    reads the same to older components."""
    attempt: str | None = None
    """The execution claim this run holds (``shoal.executor.claims``); the recorder refuses the
    events of an attempt that no longer holds its job's claim."""

    @field_validator("outputs")
    @classmethod
    def _output_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            try:
                checked_output_name(name)
            except ValueError as error:
                raise ValueError(f"output name {name!r}: {error}") from None
        return value

    @property
    def routing_key(self) -> str:
        """The topic key this event is published with."""
        return event_key(self.owner, self.job_id, self.kind)


class ControlMessage(Message):
    """``shoal.control`` (fanout to executors): act on a job."""

    job_id: str
    action: Literal["stop"] = "stop"
    reason: str = "stopped by user"


ClaimOp = Literal["claim", "renew", "release"]
Verdict = Literal["granted", "claimed", "stopped", "expired", "unknown"]
"""A claim's answer: ``granted`` (run it), ``claimed`` (another attempt holds or ran it),
``stopped`` (stopped before it ran), ``expired`` (it ended without running, or a renewal
came after the lease was taken), ``unknown`` (no such job in the store)."""


class ClaimItem(BaseModel):
    """One run to claim, renew or release: the job and this executor's attempt ID for it."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    attempt: str


class ClaimRequest(Message):
    """``shoal.claims``: an executor claims (renews, releases) runs, answered by a requester."""

    op: ClaimOp
    executor: str
    lease: float = Field(gt=0)
    items: list[ClaimItem]


class ClaimReply(Message):
    """One verdict per item, in order (for ``release``: ``granted`` when it was held)."""

    verdicts: list[Verdict] = Field(default_factory=list)
    error: WireError | None = None


HEARTBEAT_MISSES = 3
"""Heartbeat intervals a service may miss before it drops out of the cluster view."""


class Heartbeat(Message):
    """``shoal.fleet``, key ``heartbeat``: a service saying it is alive, every ``interval``
    seconds. A requester keeps the latest per ``node_id`` until ``at`` +
    :data:`HEARTBEAT_MISSES` intervals."""

    node_id: str
    """The process: an executor's ID, a requester's name and process ID."""
    role: Literal["requester", "executor"]
    host: str = ""
    """The machine (an executor's ``SHOAL_NODE_ID``)."""
    version: str = ""
    engines: list[str] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list, exclude_if=lambda images: not images)
    """The runtime images (``shoal.images.runtime_images``) its Docker engine holds (an
    executor serving docker; checked at each beat); left out while it holds none."""
    slots: int = 0
    """Jobs it runs at once (executors; 0 for a requester)."""
    running: list[str] = Field(default_factory=list)
    """IDs of the jobs it runs now."""
    held: int = 0
    """Deliveries of the compute queues it holds unacknowledged, in all (an executor)."""
    held_by_queue: dict[str, int] = Field(default_factory=dict, exclude_if=lambda held: not held)
    """``held`` by compute queue (the queues it holds some of). Left out while it holds none,
    so an idle executor's heartbeat reads the same to a requester older than the field; a
    heartbeat without it (an older executor) counts its ``held`` for ``shoal.compute``."""
    draining: bool = False
    interval: float = Field(gt=0)
    at: datetime = Field(default_factory=utcnow)


ApiOp = Literal[
    "list",
    "page",
    "summary",
    "resolve",
    "describe",
    "logs",
    "get",
    "stop",
    "job-types",
    "status",
    "blobs-missing",
    "blob-put",
    "blob-get",
]


class ApiRequest(Message):
    """``shoal.api``: a query answered from the job store."""

    op: ApiOp
    job_id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ApiReply(Message):
    """Answer to an API request."""

    result: Any = None
    error: WireError | None = None


M = TypeVar("M", bound=Message)


def encode(message: Message) -> bytes:
    """``message`` as a JSON body."""
    return message.model_dump_json(exclude_none=False).encode()


def decode(body: bytes, kind: type[M], name: str | None = None) -> M:
    """Parse ``body`` as ``kind``; ``ProtocolError`` with a readable reason otherwise (that
    calls it ``name``, by default the model's)."""
    _check_finite(body)
    try:
        message = kind.model_validate_json(body)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise ProtocolError("message body is not valid JSON") from None
        _check_version(json.loads(body))
        what = name or kind.__name__
        raise ProtocolError(f"invalid {what}: {describe_errors(error)}") from None
    _check_version({"schema_version": message.schema_version})
    return message


def _check_finite(body: bytes) -> None:
    if (b"NaN" in body or b"Infinity" in body) and _non_finite(body):
        raise ProtocolError("message body is not valid JSON: it holds NaN or Infinity")


class _NonFiniteError(Exception):
    """A ``NaN`` or ``Infinity`` constant, which JSON has not (pydantic's parser takes them)."""


def _reject_constant(name: str) -> Any:
    raise _NonFiniteError(name)


def _non_finite(body: bytes) -> bool:
    """Whether ``body`` holds a ``NaN`` or ``Infinity`` constant outside its strings: such a
    number would not survive the JSON the job is stored and forwarded as."""
    try:
        json.loads(body, parse_constant=_reject_constant)
    except _NonFiniteError:
        return True
    except ValueError:
        return False
    return False


class _BatchEnvelope(Message):
    """A :class:`SubmissionBatch` whose submissions are not read yet."""

    submissions: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


def read_batch(body: bytes) -> list[Submission | ProtocolError]:
    """The submissions of a :class:`SubmissionBatch` body, in order: each one that is not a
    valid submission is its ``ProtocolError``, and the others are kept. ``ProtocolError``
    when the body as a whole is not a batch (not JSON, no or too many submissions)."""
    try:
        batch = decode(body, SubmissionBatch)
    except ProtocolError:  # which submissions are bad? each is read alone
        envelope = decode(body, _BatchEnvelope, "SubmissionBatch")
        return [_one_of_batch(item) for item in envelope.submissions]
    return [_version_checked(submission) for submission in batch.submissions]


def _one_of_batch(data: dict[str, Any]) -> Submission | ProtocolError:
    try:
        submission = Submission.model_validate(data)
    except ValidationError as error:
        return ProtocolError(f"invalid Submission: {describe_errors(error)}")
    return _version_checked(submission)


def _version_checked(submission: Submission) -> Submission | ProtocolError:
    try:
        _check_version({"schema_version": submission.schema_version})
    except ProtocolError as error:
        return error
    return submission


def _check_version(data: Any) -> None:
    version = data.get("schema_version", SCHEMA_VERSION) if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ProtocolError(
            f"unsupported schema version {version!r}; this side speaks {SCHEMA_VERSION}"
        )
