"""The one place the store differs by database: ``INSERT … ON CONFLICT`` and connection set-up."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


def insert_for(conn: AsyncConnection) -> Any:
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing`` / ``_do_update``)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    if conn.dialect.name == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"unsupported database {conn.dialect.name!r}: use SQLite or Postgres")


def tune_sqlite(engine: AsyncEngine) -> None:
    """WAL (readers never wait for the writer), ``synchronous=FULL``, a busy timeout.

    ``FULL``: every commit fsyncs the WAL, so a submission acked after its commit survives a
    power loss or OS crash too, as its compute message does in a quorum queue. (``NORMAL``
    in WAL mode only survives a crash of the process.) Writes are group commits, so the
    fsync is paid once per round, not per job: no measurable throughput cost in
    ``bench.bench_requester`` (an fsync is ~0.25 ms on the bench machine).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
