"""``job list`` pages, ``job summary`` counts and short ID prefixes, computed in SQL.

A page is keyset-paged, newest first: ``(created_at, id)`` of the job named by ``after``
starts the next page, so a page costs the rows it returns plus two counts (the matching jobs,
and those on earlier pages), whatever the page's depth. Translated originals are left out
unless a state filter asks for ``translated``. ``scope`` (owner, namespaces) keeps that
owner's jobs and the jobs in those namespaces (``shoal.requester.access``); ``None`` is every job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, exists, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.errors import NotFoundError, UsageError

from . import schema
from .reads import iso, summary

Scope = tuple[str, frozenset[str]] | None

MIN_PREFIX = 6
"""The fewest characters after ``j-`` a short job ID may have."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list or summary covers."""

    states: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None
    """Only jobs created at or after this (UTC)."""
    scope: Scope = None


def _scoped(scope: Scope) -> ColumnElement[bool]:
    jobs = schema.jobs
    if scope is None:
        return true()
    owner, namespaces = scope
    return or_(jobs.c.owner == owner, jobs.c.namespace.in_(sorted(namespaces)))


def _matching(wanted: JobFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``wanted``."""
    jobs, tags = schema.jobs, schema.job_labels
    clauses = [_scoped(wanted.scope)]
    if wanted.states:
        clauses.append(jobs.c.state.in_(wanted.states))
    else:
        clauses.append(jobs.c.translated_id.is_(None))
    if wanted.since is not None:
        clauses.append(jobs.c.created_at >= wanted.since)
    for key, value in wanted.labels.items():
        clauses.append(
            exists().where(tags.c.job_id == jobs.c.id, tags.c.key == key, tags.c.value == value)
        )
    return clauses


def _up_to(cursor: Row[Any]) -> ColumnElement[bool]:
    """Jobs listed before ``cursor`` or at it (newest first, ties by ID)."""
    jobs = schema.jobs
    return or_(
        jobs.c.created_at > cursor.created_at,
        and_(jobs.c.created_at == cursor.created_at, jobs.c.id <= cursor.id),
    )


async def page(
    conn: AsyncConnection, wanted: JobFilter, limit: int, after: Row[Any] | None
) -> dict[str, Any]:
    """Up to ``limit`` jobs after the job ``after`` (a ``jobs`` row), newest first:
    ``{"jobs", "total", "skipped", "next"}``: the jobs matching ``wanted`` in all, those on
    earlier pages, and the cursor of the next page (``None`` on the last)."""
    jobs, runs = schema.jobs, schema.executions
    clauses = _matching(wanted)
    started = select(func.min(runs.c.started_at)).where(runs.c.job_id == jobs.c.id)
    ended = select(func.max(runs.c.ended_at)).where(runs.c.job_id == jobs.c.id)
    query = (
        select(
            jobs,
            started.scalar_subquery().label("started_at"),
            ended.scalar_subquery().label("ended_at"),
        )
        .where(*clauses)
        .order_by(jobs.c.created_at.desc(), jobs.c.id)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(~_up_to(after))
    rows = (await conn.execute(query)).all()
    earlier = func.sum(case((_up_to(after), 1), else_=0)) if after is not None else None
    counts = select(func.count(), *([earlier] if earlier is not None else [])).where(*clauses)
    counted = (await conn.execute(counts)).one()
    listed = [
        summary(row) | {"started_at": iso(row.started_at), "ended_at": iso(row.ended_at)}
        for row in rows[:limit]
    ]
    return {
        "jobs": listed,
        "total": int(counted[0]),
        "skipped": int(counted[1] or 0) if after is not None else 0,
        "next": listed[-1]["id"] if len(rows) > limit else None,
    }


async def counts(conn: AsyncConnection, wanted: JobFilter) -> dict[str, Any]:
    """Jobs matching ``wanted`` counted by state and by job type: ``{"total", "states":
    {state: n}, "types": {job_type: {state: n}}}``."""
    jobs = schema.jobs
    query = (
        select(jobs.c.job_type, jobs.c.state, func.count())
        .where(*_matching(wanted))
        .group_by(jobs.c.job_type, jobs.c.state)
    )
    states: dict[str, int] = {}
    types: dict[str, dict[str, int]] = {}
    for job_type, state, count in await conn.execute(query):
        states[state] = states.get(state, 0) + count
        types.setdefault(job_type, {})[state] = count
    return {
        "total": sum(states.values()),
        "states": dict(sorted(states.items())),
        "types": dict(sorted(types.items())),
    }


def id_prefix(text: str) -> str:
    """``text`` as a job ID or its prefix (``j-`` added when left out, lower case):
    ``NotFoundError`` if no job ID can start so, ``UsageError`` if it is too short."""
    prefix = text.strip().lower()
    if not prefix.startswith("j-"):
        prefix = "j-" + prefix
    body = prefix[2:]
    if body.strip("0123456789abcdef-"):
        raise NotFoundError(f"no job {text!r}")
    if len(body) < MIN_PREFIX:
        raise UsageError(
            f"job ID {text!r} is too short: give at least {MIN_PREFIX} characters after j-"
        )
    return prefix


async def by_prefix(conn: AsyncConnection, prefix: str, scope: Scope, most: int) -> list[str]:
    """Up to ``most`` runnable job IDs whose own ID, or whose original's, starts with
    ``prefix``, among the jobs in ``scope``. Its cost: a look at the owner's jobs (through
    ``ix_jobs_owner_created``); for an operator, at every job (a ``LIKE`` uses the primary
    key's index only under SQLite's or a C collation)."""
    jobs = schema.jobs
    query = (
        select(jobs.c.id, jobs.c.translated_id)
        .where(jobs.c.id.startswith(prefix, autoescape=True), _scoped(scope))
        .order_by(jobs.c.id)
        .limit(most * 2)
    )
    found = dict.fromkeys(row.translated_id or row.id for row in await conn.execute(query))
    return list(found)[:most]


async def visible_row(conn: AsyncConnection, job_id: str, scope: Scope) -> Row[Any] | None:
    """The ``jobs`` row of ``job_id`` if it is in ``scope``."""
    jobs = schema.jobs
    result = await conn.execute(select(jobs).where(jobs.c.id == job_id, _scoped(scope)))
    return result.first()
