"""``shoal job wait --batch ID``: a batch's progress until every job of it has ended.

The requester counts the batch's jobs by state (``summary`` with the label ``batch=ID``,
counted in SQL) about once a second; a typed job's original (state ``translated``) is not
counted, its runnable job is. On a terminal the progress is one line redrawn in place (a
bar and the counts); elsewhere a plain line is printed each time the counts change. The
wait ends when no job is pending, queued or running: exit 0 when all completed, 1 when any
failed or was stopped, 124 when ``--wait-timeout`` ran out first (the jobs are left as they
are).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import click

from shoal.errors import JobFailedError, NotFoundError, WaitTimeoutError

from .batch import BATCH_LABEL

if TYPE_CHECKING:
    from .session import Session

POLL_SECONDS = 1.0
WAITING = ("pending", "queued", "running")
ENDED = ("completed", "failed", "stopped")
BAR_WIDTH = 30


def counts(summary: dict[str, Any]) -> dict[str, int]:
    """State → count of the batch's runnable jobs (originals of typed jobs left out)."""
    states = {s: int(n) for s, n in summary.get("states", {}).items() if s != "translated"}
    return {s: n for s, n in states.items() if n}


def progress_line(batch_id: str, states: dict[str, int], tty: bool) -> str:
    """``batch b-…: 12/20 ended (10 completed, 2 failed), 8 waiting (…)``, with a bar on a
    terminal."""
    total = sum(states.values())
    ended = sum(states.get(s, 0) for s in ENDED)
    parts = ", ".join(f"{states[s]} {s}" for s in (*ENDED, *WAITING) if states.get(s))
    line = f"batch {batch_id}: {ended}/{total} ended ({parts})"
    if not tty:
        return line
    filled = BAR_WIDTH * ended // total if total else 0
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {line}"


async def wait_batch(session: Session, batch_id: str, deadline: float | None) -> dict[str, int]:
    """The batch's final counts, printing progress on stderr meanwhile."""
    tty = sys.stderr.isatty()
    loop = asyncio.get_running_loop()
    give_up = None if deadline is None else loop.time() + deadline
    last = ""
    states: dict[str, int] = {}
    while True:
        summary = await session.api("summary", labels={BATCH_LABEL: batch_id})
        states = counts(summary)
        if not states:
            raise NotFoundError(f"no jobs in batch {batch_id}")
        line = progress_line(batch_id, states, tty)
        if line != last:
            click.echo(f"\r{line}\x1b[K" if tty else line, err=True, nl=not tty)
            last = line
        if not any(states.get(s) for s in WAITING):
            break
        if give_up is not None and loop.time() >= give_up:
            if tty:
                click.echo(err=True)
            raise WaitTimeoutError(
                f"gave up waiting after {deadline:g}s for batch {batch_id} "
                f"({sum(states.get(s, 0) for s in WAITING)} jobs not ended); "
                "the jobs were left as they are"
            )
        await asyncio.sleep(POLL_SECONDS)
    if tty:
        click.echo(err=True)
    return states


def verdict(batch_id: str, states: dict[str, int]) -> None:
    """``JobFailedError`` (exit 1) when any job of the batch did not complete."""
    bad = {s: states[s] for s in ("failed", "stopped") if states.get(s)}
    if bad:
        what = ", ".join(f"{n} {s}" for s, n in bad.items())
        raise JobFailedError(
            f"batch {batch_id}: {what} of {sum(states.values())} jobs; "
            f"shoal job list -l {BATCH_LABEL}={batch_id} --state failed shows them"
        )
