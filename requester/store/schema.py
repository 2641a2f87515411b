"""The job store's tables (SQLAlchemy Core), created on start by ``JobStore.open``.

::

    jobs         one row per job: the submitted original and, when translated, the runnable
                 job (``original_id`` / ``translated_id`` link them); spec JSON, state + rank
    job_labels   (job_id, key) → value, for ``job list -l k=v``
    executions   one row per (job, executor): state, exit code, error, started/ended
    log_chunks   (job_id, executor, seq) → one chunk of stdout/stderr; seq orders them
    log_streams  (job_id, stream) → bytes kept and a truncated flag (bounded per stream)
    outputs      (job_id, name) → the result folder as tar.gz bytes (bounded, see settings)
    event_marks  (job_id, executor, seq): every executor event recorded, whatever its kind
    run_ends     (job_id, executor) → the seq of that run's terminal event; the run is fully
                 recorded once event_marks holds every seq up to it
    claims       job_id → the attempt that holds the job's run, its executor and lease end
                 (``store.claims``); a stop before any run holds it as ``STOP_ATTEMPT``

Times are stored in UTC; SQLite gives them back naive, :func:`utc` puts the zone back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

_ID = String(64)

jobs = Table(
    "jobs",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("name", String(256), nullable=False),
    Column("namespace", String(128), nullable=False),
    Column("job_type", String(64), nullable=False),
    Column("engine", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_rank", Integer, nullable=False),
    Column("original_id", _ID, nullable=True),
    Column("translated_id", _ID, nullable=True),
    Column("idempotency_key", String(512), nullable=True),
    Column("spec", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_jobs_created", "created_at"),
    Index("ix_jobs_state", "state"),
)

job_labels = Table(
    "job_labels",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("value", String(1024), nullable=False),
    Index("ix_job_labels_kv", "key", "value"),
)

executions = Table(
    "executions",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("executor", String(256), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("state_rank", Integer, nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

log_chunks = Table(
    "log_chunks",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("executor", String(256), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("stream", String(8), nullable=False),
    Column("data", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

log_streams = Table(
    "log_streams",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("stream", String(8), primary_key=True),
    Column("bytes", Integer, nullable=False),
    Column("truncated", Boolean, nullable=False),
)

outputs = Table(
    "outputs",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("data", LargeBinary, nullable=True),
    Column("size", Integer, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("executor", String(256), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)


event_marks = Table(
    "event_marks",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("executor", String(256), primary_key=True),
    Column("seq", Integer, primary_key=True),
)

run_ends = Table(
    "run_ends",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("executor", String(256), primary_key=True),
    Column("final_seq", Integer, nullable=False),
)

claims = Table(
    "claims",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("attempt", String(64), nullable=False),
    Column("executor", String(256), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)


def utc(value: datetime | None) -> datetime | None:
    """``value`` with its UTC zone (SQLite drops it)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
