"""The latest heartbeat of each service (``shoal.wire.Heartbeat``), for ``shoal status``.

A heartbeat counts from the time it was sent (``at``, capped at now: a clock ahead cannot
keep a node alive longer) and expires :data:`MISSES` intervals later. A heartbeat older
than the one kept (requesters consume ``shoal.heartbeats`` in parallel) changes nothing; an
expired one is never kept, so a backlog consumed late does not bring a stopped node back.
Expired rows are deleted by :func:`prune`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.wire import HEARTBEAT_MISSES, Heartbeat

from . import schema
from .dialect import insert_for

MISSES = HEARTBEAT_MISSES
"""Heartbeat intervals a node may miss before it drops out of the view."""


async def record(conn: AsyncConnection, heartbeat: Heartbeat, now: datetime) -> bool:
    """Keep ``heartbeat`` unless it expired or an as recent one is kept; whether it was."""
    seen = min(heartbeat.at, now)
    expires = seen + timedelta(seconds=MISSES * heartbeat.interval)
    if expires <= now:
        return False
    nodes = schema.nodes
    values = {
        "node_id": heartbeat.node_id,
        "role": heartbeat.role,
        "heartbeat": heartbeat.model_dump_json(),
        "seen_at": seen,
        "expires_at": expires,
    }
    statement = insert_for(conn)(nodes).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[nodes.c.node_id],
        set_={k: statement.excluded[k] for k in values if k != "node_id"},
        where=nodes.c.seen_at < statement.excluded.seen_at,
    )
    result = await conn.execute(statement)
    return bool(result.rowcount)


async def alive(conn: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
    """Each node whose heartbeat has not expired: the heartbeat's fields, ``last_seen`` and
    ``expires_at``; requesters first, then by node ID."""
    nodes = schema.nodes
    rows = (
        await conn.execute(
            select(nodes.c.heartbeat, nodes.c.seen_at, nodes.c.expires_at)
            .where(nodes.c.expires_at > now)
            .order_by(nodes.c.role.desc(), nodes.c.node_id)
        )
    ).all()
    found = []
    for row in rows:
        beat = Heartbeat.model_validate_json(row.heartbeat).model_dump(
            mode="json", exclude={"schema_version", "at"}
        )
        beat["last_seen"] = schema.utc(row.seen_at).isoformat()  # type: ignore[union-attr]
        beat["expires_at"] = schema.utc(row.expires_at).isoformat()  # type: ignore[union-attr]
        found.append(beat)
    return found


async def forget(conn: AsyncConnection, node_id: str) -> None:
    """Remove ``node_id`` from the view (a requester stopping cleanly)."""
    await conn.execute(delete(schema.nodes).where(schema.nodes.c.node_id == node_id))


async def prune(conn: AsyncConnection, now: datetime) -> int:
    """Delete the heartbeats that expired; how many."""
    result = await conn.execute(delete(schema.nodes).where(schema.nodes.c.expires_at <= now))
    return int(result.rowcount)
