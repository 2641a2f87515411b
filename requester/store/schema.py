"""The job store's tables (SQLAlchemy Core), created on start by ``JobStore.open``.

::

    jobs         one row per job: the submitted original and, when translated, the runnable
                 job (``original_id`` / ``translated_id`` link them); spec JSON, state + rank,
                 ``owner`` (the submitting user), ``left_out`` (the executor's note on the
                 results it left out over its output limit, from the last ``result`` event)
    job_labels   (job_id, key) → value, for ``job list -l k=v``
    executions   one row per (job, executor): state, exit code, error, started/ended,
                 ``lowered`` (the limits the executor lowered to its maxima, one per line,
                 from the run's ``running`` event)
    log_chunks   (job_id, executor, seq) → one chunk of stdout/stderr; seq orders them
    log_streams  (job_id, stream) → bytes kept and a truncated flag (bounded per stream)
    outputs      (job_id, name) → the result folder as tar.gz bytes (bounded, see settings)
    event_marks  (job_id, executor, seq): every executor event recorded, whatever its kind
    run_ends     (job_id, executor) → the seq of that run's terminal event; the run is fully
                 recorded once event_marks holds every seq up to it
    claims       job_id → the attempt that holds the job's run, its executor and lease end
                 (``store.claims``); a stop before any run holds it as ``STOP_ATTEMPT``
    deadlines    (job_id, kind) → when the job's ``queue`` or ``total`` timeout runs out
                 (``shoal.requester.store.deadlines``; a row is removed once handled)
    retries      job_id → the number of the job's current attempt (2 once retried) and when its
                 compute message is due again (``shoal.requester.store.retries``; NULL once sent)
    run_accounts (job_id, executor) → the broker account whose event for that run was recorded
                 first: only that account's events for it are recorded afterwards
    blobs        sha256 → a content-addressed archive many jobs share (``shoal.blobs``): its
                 bytes and size, when it was first stored (``shoal.requester.store.blobs``)
    job_blobs    (job_id, sha256): the blobs a job's inputs name, so that retention removes a
                 blob once no job kept names it (``store.retention``)
    store_meta   key → value about the store itself: ``store_id``, made once, names the store
                 to the other requesters of a broker (``shoal.requester.peers``)
    nodes        node_id → the latest heartbeat of a service (``shoal.requester.store.nodes``), its
                 role, when it was sent and when it expires (``shoal status``)

Tables are created when missing; columns added since a table was created are added by
:func:`upgrade` (``owner``: ``''`` for jobs recorded before owners existed; ``left_out`` and
``executions.lowered``: NULL).

Times are stored in UTC; SQLite gives them back naive, :func:`utc` puts the zone back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.engine import Connection

metadata = MetaData()

_ID = String(64)

jobs = Table(
    "jobs",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("name", String(256), nullable=False),
    Column("namespace", String(128), nullable=False),
    Column("owner", String(64), nullable=False, server_default=""),
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
    Column("left_out", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_jobs_created", "created_at"),
    Index("ix_jobs_state", "state"),
    Index("ix_jobs_owner_created", "owner", "created_at"),
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
    Column("lowered", Text, nullable=True),
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

deadlines = Table(
    "deadlines",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("seconds", Float, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Index("ix_deadlines_due", "due_at"),
)

retries = Table(
    "retries",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=True),
    Index("ix_retries_due", "due_at"),
)

run_accounts = Table(
    "run_accounts",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("executor", String(256), primary_key=True),
    Column("account", String(64), nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

job_blobs = Table(
    "job_blobs",
    metadata,
    Column("job_id", _ID, primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Index("ix_job_blobs_sha256", "sha256"),
)

store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(256), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("heartbeat", Text, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

ADDED_COLUMNS = {"jobs": ("owner", "left_out"), "executions": ("lowered",)}
"""Columns of existing tables newer than the first schema, added by :func:`upgrade`."""

ADDED_INDEXES = {"jobs": ("ix_jobs_owner_created",)}
"""Indexes of existing tables newer than the first schema, created by :func:`upgrade`."""


def upgrade(conn: Connection) -> list[str]:
    """Add the columns of :data:`ADDED_COLUMNS` and the indexes of :data:`ADDED_INDEXES`
    missing from existing tables (idempotent); the ``table.column`` names added."""
    added = []
    for table_name, columns in ADDED_COLUMNS.items():
        present = {c["name"] for c in inspect(conn).get_columns(table_name)}
        table = metadata.tables[table_name]
        for name in columns:
            if name in present:
                continue
            column = table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            default = getattr(column.server_default, "arg", None)
            clause = f" NOT NULL DEFAULT '{default}'" if default is not None else ""
            conn.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}{clause}"))
            added.append(f"{table_name}.{name}")
    for table_name, names in ADDED_INDEXES.items():
        for index in metadata.tables[table_name].indexes:
            if index.name in names:
                index.create(conn, checkfirst=True)
    return added


def utc(value: datetime | None) -> datetime | None:
    """``value`` with its UTC zone (SQLite drops it)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
