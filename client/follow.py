"""Waiting for a job to end, and streaming its logs (``--wait``, ``-f``, ``job logs -f``).

The private event queue is bound *before* the job's current state and stored logs are read,
so nothing that happens in between is missed; log chunks seen twice (stored and live) are
printed once, by ``(executor, seq)``. When the connection drops and the session can move to
another broker address (a cluster's node), the wait starts over there the same way: bind,
then read; no event is missed and no log chunk printed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import click

from shoal.errors import UnavailableError, WaitTimeoutError
from shoal.model import TERMINAL_STATES
from shoal.wire import JobEvent

from .session import BROKER_ERRORS, Session

T = TypeVar("T")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
RECHECK_SECONDS = 2.0
"""After this long without an event, ask the store again: a ``recorded`` event published
just before our queue was bound never reaches us."""


class LogPrinter:
    """Writes chunks to stdout/stderr, each ``(executor, seq)`` once."""

    def __init__(self) -> None:
        self._seen: set[tuple[str | None, int]] = set()

    def chunk(self, executor: str | None, seq: int, stream: str | None, data: str) -> None:
        """Print one chunk unless printed before."""
        key = (executor, seq)
        if key in self._seen:
            return
        self._seen.add(key)
        click.echo(data, nl=False, err=stream == "stderr")

    def stored(self, logs: dict[str, Any]) -> None:
        """Print the chunks the store holds."""
        for c in logs.get("chunks", []):
            self.chunk(c.get("executor"), int(c["seq"]), c.get("stream"), str(c["data"]))
        for stream, cut in (logs.get("truncated") or {}).items():
            if cut:
                click.echo(f"[shoal: {stream} truncated by the store's limit]", err=True)


class Spinner:
    """A one-line progress indicator on stderr, only when stderr is a terminal."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.state = "waiting"
        self._on = sys.stderr.isatty()
        self._start = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def _spin(self) -> None:
        for frame in _cycle(SPINNER):
            elapsed = time.monotonic() - self._start
            click.echo(
                f"\r{frame} {self.job_id} {self.state} {elapsed:.0f}s\x1b[K", nl=False, err=True
            )
            await asyncio.sleep(0.1)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Spin while inside; the line is cleared on exit."""
        if self._on:
            self._task = asyncio.create_task(self._spin())
        try:
            yield
        finally:
            if self._task is not None:
                self._task.cancel()
                click.echo("\r\x1b[K", nl=False, err=True)


def _cycle(frames: str) -> Iterator[str]:
    while True:
        yield from frames


async def wait_for_end(
    session: Session,
    job_id: str,
    *,
    follow: bool,
    spin: bool,
    seen: dict[str, str] | None = None,
    owner: str | None = None,
) -> str:
    """Block until the job is terminal *and* recorded; print its logs when ``follow``.

    The recorder's ``recorded`` event (or a store that already says so) ends the wait, so
    the job's logs and outputs can be read as soon as this returns. The final state. While
    it waits, ``seen[job_id]`` holds the last state seen; it is removed once the wait ends.
    ``owner`` names the job's owner (asked from the requester when not given).
    """
    printer = LogPrinter()
    spinner = Spinner(job_id) if spin and not follow else None
    seen = {job_id: "state unknown"} if seen is None else seen
    while True:
        generation = session.generation
        try:
            if owner is None:
                owner = str((await session.api("describe", job_id)).get("owner") or session.user)
            state = await _watch(session, job_id, owner, printer, spinner, follow, seen)
            break
        except (UnavailableError, *BROKER_ERRORS):
            if not await session.reconnect(generation):
                raise
    seen.pop(job_id, None)
    return state


async def _watch(
    session: Session,
    job_id: str,
    owner: str,
    printer: LogPrinter,
    spinner: Spinner | None,
    follow: bool,
    seen: dict[str, str],
) -> str:
    """The job's final state, on the session's current connection (see :func:`wait_for_end`)."""
    async with session.events(job_id, owner) as inbox:
        if follow:
            printer.stored(await session.api("logs", job_id))
        record = await session.api("describe", job_id)
        state, done = str(record["state"]), _settled(record)
        seen[job_id] = state
        if spinner is not None:
            spinner.state = state
        with spinner.running() if spinner is not None else contextlib.nullcontext():
            while not done:
                state, done = await _next(session, job_id, inbox, printer, follow, state)
                seen[job_id] = state
                if spinner is not None:
                    spinner.state = state
        if follow:
            printer.stored(await session.api("logs", job_id))
    return state


async def within(deadline: float | None, work: Awaitable[T], seen: dict[str, str]) -> T:
    """``work``'s result, or ``WaitTimeoutError`` once ``deadline`` seconds passed (``None``:
    no deadline), naming the jobs still in ``seen`` with their last state. Nothing is done to
    them."""
    if deadline is None:
        return await work
    limit = asyncio.timeout(deadline)
    try:
        async with limit:
            return await work
    except TimeoutError:
        if not limit.expired():
            raise
    waiting = ", ".join(f"{job_id} ({state})" for job_id, state in seen.items())
    left = "the job was left as it is" if len(seen) == 1 else "the jobs were left as they are"
    raise WaitTimeoutError(f"gave up waiting after {deadline:g}s for {waiting}; {left}")


def _settled(record: dict[str, Any]) -> bool:
    return record["state"] in TERMINAL_STATES and bool(record.get("recorded"))


async def _next(
    session: Session,
    job_id: str,
    inbox: asyncio.Queue[JobEvent],
    printer: LogPrinter,
    follow: bool,
    state: str,
) -> tuple[str, bool]:
    """``(state, settled)`` after the next event, or from the store after a quiet spell."""
    try:
        event = await session.wait(inbox.get(), RECHECK_SECONDS)
    except TimeoutError:
        record = await session.api("describe", job_id)
        return str(record["state"]), _settled(record)
    if event.kind == "log" and follow:
        printer.chunk(event.executor, event.seq, event.stream, event.data)
    if event.state is None:
        return state, False
    return event.state.value, event.kind == "recorded"
