"""The one place the store differs by database: ``INSERT … ON CONFLICT`` (also as one
``executemany`` of pre-rendered rows, :class:`BulkInsert`) and connection set-up."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
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


@dataclass(frozen=True)
class BulkInsert:
    """``INSERT … ON CONFLICT DO NOTHING`` of ``columns`` rendered once for a dialect, run
    as the driver's ``executemany``: no per-row compile or parameter step of SQLAlchemy's.
    Each row is a tuple in ``columns`` order, its values as SQLAlchemy would bind them
    (:meth:`row` applies the columns' bind processors, e.g. SQLite's text datetimes)."""

    sql: str
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    def row(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """``values`` (in ``columns`` order) as the driver's parameters."""
        if not self.processors:
            return tuple(values)
        bound = list(values)
        for index, process in self.processors:
            bound[index] = process(bound[index])
        return tuple(bound)


@functools.cache
def _bulk_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> BulkInsert:
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    compiled = insert(table).on_conflict_do_nothing().compile(dialect=dialect, column_keys=columns)
    if compiled.positiontup != list(columns):
        raise RuntimeError(f"{dialect.name}: parameters not positional in column order")
    processors = []
    for index, name in enumerate(columns):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((index, process))
    return BulkInsert(compiled.string, tuple(processors))


def bulk_insert(conn: AsyncConnection, table: Table, columns: tuple[str, ...]) -> BulkInsert:
    """The :class:`BulkInsert` of ``columns`` into ``table`` on ``conn``'s database."""
    insert_for(conn)  # refuses an unsupported database
    return _bulk_insert(conn.dialect, table, columns)


async def insert_rows(conn: AsyncConnection, bulk: BulkInsert, rows: list[tuple[Any, ...]]) -> None:
    """Run ``bulk`` for ``rows`` (made by :meth:`BulkInsert.row`) in one ``executemany``."""
    if rows:
        await conn.exec_driver_sql(bulk.sql, rows)
