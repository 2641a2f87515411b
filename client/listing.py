"""``shoal job list`` and ``job summary``: fetching pages, and rows and times for people.

Times are shown relative (``5m ago``) when stdout is a terminal and as ISO 8601 in UTC
(``2026-12-07T06:11:14Z``) otherwise, so a table written to a file or pipe stays exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from shoal.errors import UsageError
from shoal.units import parse_duration

if TYPE_CHECKING:
    from .session import Session

PAGE_MOST = 1000
"""The most jobs the requester returns in one answer; longer lists are fetched page by page."""

LIST_HEADER = ("ID", "TYPE", "STATE", "EXIT", "CREATED", "STARTED", "DURATION", "NAME", "LABELS")
SUMMARY_STATES = ("pending", "queued", "running", "completed", "failed", "stopped")
"""The columns of ``job summary`` (translated originals are not counted)."""


def since_time(value: str, now: datetime | None = None) -> str:
    """``--since``: a duration back from ``now`` (``90m``, ``2d``) or a time (ISO 8601; local
    when it has no zone), as ISO 8601 in UTC."""
    now = now or datetime.now(UTC)
    try:
        return (now - timedelta(seconds=parse_duration(value))).isoformat()
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since: {value!r} is neither a duration (90m, 2d) nor a time "
            "(2026-12-07 or 2026-12-07T06:00, local unless it has a zone)"
        ) from None
    return moment.astimezone(UTC).isoformat()


def _chunk(limit: int | None, have: int) -> int | None:
    """The page size to ask for next (see :func:`fetch`)."""
    if limit is None:
        return None
    return PAGE_MOST if limit == 0 else min(limit - have, PAGE_MOST)


async def fetch(
    session: Session, params: dict[str, Any], limit: int | None, after: str | None
) -> dict[str, Any]:
    """The first ``limit`` jobs after ``after`` (``None``: the requester's default count;
    ``0``: all), asking page by page: ``{"jobs", "total", "skipped", "next"}``."""
    first: dict[str, Any] = await session.api("page", limit=_chunk(limit, 0), after=after, **params)
    jobs: list[dict[str, Any]] = first["jobs"]
    after = first["next"]
    while after is not None and limit is not None and (limit == 0 or len(jobs) < limit):
        page = await session.api("page", limit=_chunk(limit, len(jobs)), after=after, **params)
        jobs += page["jobs"]
        after = page["next"]
    return {"jobs": jobs, "total": first["total"], "skipped": first["skipped"], "next": after}


def footer(page: dict[str, Any]) -> str | None:
    """``showing 50 of 844 (next: --after ID)`` when the list is not whole, else ``None``."""
    shown, skipped, total = len(page["jobs"]), page["skipped"], page["total"]
    if page["next"] is None and not skipped:
        return None
    span = f"{skipped + 1}-{skipped + shown}" if skipped and shown else str(shown)
    more = f" (next: --after {page['next']})" if page["next"] else ""
    return f"showing {span} of {total}{more}"


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time from the requester (always with its zone), or ``None``."""
    return datetime.fromisoformat(value) if value else None


def format_duration(seconds: float) -> str:
    """``0.4s``, ``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f}s"
    whole = int(seconds)
    for unit, size, small, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // small_size:02d}{small}"
    return f"{whole}s"


def format_time(moment: datetime | None, now: datetime, relative: bool) -> str:
    """``moment`` as ``5m ago`` (``relative``) or ISO 8601 in UTC; ``-`` when unknown."""
    if moment is None:
        return "-"
    if not relative:
        return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    ago = (now - moment).total_seconds()
    if ago < 1:
        return "just now"
    return f"{int(ago)}s ago" if ago < 60 else f"{format_duration(ago)} ago"


def duration(job: dict[str, Any], now: datetime) -> str:
    """How long the job ran (so far, while it runs); ``-`` if it never started."""
    started = parse_time(job.get("started_at"))
    if started is None:
        return "-"
    if job["state"] == "running":
        return format_duration((now - started).total_seconds())
    ended = parse_time(job.get("ended_at")) or parse_time(job.get("updated_at")) or now
    return format_duration((ended - started).total_seconds())


def list_rows(
    jobs: Iterable[dict[str, Any]], now: datetime, relative: bool
) -> list[tuple[str, ...]]:
    """One ``job list`` row per job (see :data:`LIST_HEADER`)."""
    return [
        (
            j["id"],
            j["job_type"],
            j["state"],
            "" if j["exit_code"] is None else str(j["exit_code"]),
            format_time(parse_time(j["created_at"]), now, relative),
            format_time(parse_time(j.get("started_at")), now, relative),
            duration(j, now),
            j["name"],
            ",".join(f"{k}={v}" for k, v in sorted(j["labels"].items())),
        )
        for j in jobs
    ]


def summary_rows(counts: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """``job summary``'s header and rows: one per job type, then ``all`` (counts by state)."""
    states = [*SUMMARY_STATES, *sorted(set(counts["states"]) - set(SUMMARY_STATES))]
    header = ("TYPE", *(s.upper() for s in states), "TOTAL")

    def row(name: str, by_state: dict[str, int]) -> tuple[str, ...]:
        return (name, *(str(by_state.get(s, 0)) for s in states), str(sum(by_state.values())))

    rows = [row(job_type, by_state) for job_type, by_state in counts["types"].items()]
    return header, [*rows, row("all", counts["states"])]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header`` in aligned columns."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def full_ids(session: Session, job_ids: Iterable[str]) -> list[str]:
    """Each of ``job_ids`` as the full ID of the job it names (a short prefix is asked from
    the requester; a full ID is kept as it is)."""
    from shoal.model import JOB_ID

    found = []
    for job_id in job_ids:
        if JOB_ID.fullmatch(job_id):
            found.append(job_id)
        else:
            found.append(str((await session.api("resolve", job_id))["id"]))
    return found
