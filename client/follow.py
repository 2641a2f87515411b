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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from shoal.errors import UnavailableError, WaitTimeoutError
from shoal.model import TERMINAL_STATES, JobState
from shoal.wire import JobEvent

from .session import BROKER_ERRORS, Session

T = TypeVar("T")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
RECHECK_SECONDS = 2.0
"""After this long without an event, ask the store again: a ``recorded`` event published
just before our queue was bound never reaches us."""


@dataclass(frozen=True)
class LogChunk:
    """A piece of a job's output, as the executor sent it."""

    stream: str
    """``stdout`` or ``stderr``."""
    data: str
    executor: str | None
    """The executor that ran the attempt it comes from."""
    seq: int
    """Its place in that executor's output of the job."""


def stored_chunks(logs: dict[str, Any]) -> list[LogChunk]:
    """The chunks of a ``logs`` answer of the requester."""
    return [
        LogChunk(str(c.get("stream") or "stdout"), str(c["data"]), c.get("executor"), int(c["seq"]))
        for c in logs.get("chunks", [])
    ]


def echo_chunk(chunk: LogChunk) -> None:
    """Write a chunk to stdout or stderr, as the job wrote it."""
    click.echo(chunk.data, nl=False, err=chunk.stream == "stderr")


def echo_truncated(stream: str) -> None:
    """Say on stderr that the store cut ``stream`` short."""
    click.echo(f"[shoal: {stream} truncated by the store's limit]", err=True)


def echo_lowered(notes: list[str]) -> None:
    """Say on stderr which limits the executor lowered to its maxima."""
    click.echo(f"[shoal: limits lowered: {'; '.join(notes)}]", err=True)


class LogPrinter:
    """Hands each chunk, by ``(executor, seq)``, once to ``write`` (by default to
    stdout/stderr), and each stream the store cut short to ``truncated``."""

    def __init__(
        self,
        write: Callable[[LogChunk], None] = echo_chunk,
        truncated: Callable[[str], None] = echo_truncated,
    ) -> None:
        self._seen: set[tuple[str | None, int]] = set()
        self._write = write
        self._truncated = truncated

    def chunk(self, chunk: LogChunk) -> None:
        """Write one chunk unless written before."""
        key = (chunk.executor, chunk.seq)
        if key in self._seen:
            return
        self._seen.add(key)
        self._write(chunk)

    def stored(self, logs: dict[str, Any]) -> None:
        """Write the chunks the store holds."""
        for chunk in stored_chunks(logs):
            self.chunk(chunk)
        for stream, cut in (logs.get("truncated") or {}).items():
            if cut:
                self._truncated(stream)


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

    def clear(self) -> None:
        """Clear the spinner's line (it is drawn again at its next frame)."""
        if self._task is not None:
            click.echo("\r\x1b[K", nl=False, err=True)

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
    printer: LogPrinter | None = None,
    lowered: Callable[[list[str]], None] | None = None,
) -> str:
    """Block until the job is terminal *and* recorded; print its logs when ``follow``.

    The recorder's ``recorded`` event (or a store that already says so) ends the wait, so
    the job's logs and outputs can be read as soon as this returns. The final state. While
    it waits, ``seen[job_id]`` holds the last state seen; it is removed once the wait ends.
    ``owner`` names the job's owner (asked from the requester when not given); ``printer``
    takes the logs (by default they go to stdout and stderr); ``lowered``, when given, is told
    once of each run's limits the executor lowered (from its ``running`` event or the store).
    """
    printer = printer or LogPrinter()
    spinner = Spinner(job_id) if spin and not follow else None
    notice = _Notice(lowered, spinner)
    seen = {job_id: "state unknown"} if seen is None else seen
    while True:
        generation = session.generation
        try:
            if owner is None:
                owner = str((await session.api("describe", job_id)).get("owner") or session.user)
            state = await _watch(session, job_id, owner, printer, spinner, follow, seen, notice)
            break
        except (UnavailableError, *BROKER_ERRORS):
            if not await session.reconnect(generation):
                raise
    seen.pop(job_id, None)
    return state


@dataclass
class _Notice:
    """Tells ``lowered`` once of each run's lowered limits, clearing the spinner's line."""

    lowered: Callable[[list[str]], None] | None
    spinner: Spinner | None
    said: set[tuple[str, ...]] = field(default_factory=set)
    heard: bool = False
    """A ``running`` event came during the wait: it told whatever there was to tell."""

    def __call__(self, notes: list[str]) -> None:
        if self.lowered is not None and notes and tuple(notes) not in self.said:
            self.said.add(tuple(notes))
            if self.spinner is not None:
                self.spinner.clear()
            self.lowered(notes)

    @property
    def unsaid(self) -> bool:
        """Wanted, nothing said and no ``running`` event heard: that event may have come
        before the wait, and been recorded only after the store was read."""
        return self.lowered is not None and not self.said and not self.heard


async def _watch(
    session: Session,
    job_id: str,
    owner: str,
    printer: LogPrinter,
    spinner: Spinner | None,
    follow: bool,
    seen: dict[str, str],
    notice: _Notice,
) -> str:
    """The job's final state, on the session's current connection (see :func:`wait_for_end`)."""
    async with session.events(job_id, owner) as inbox:
        if follow:
            printer.stored(await session.api("logs", job_id))
        record = await session.api("describe", job_id)
        notice(list(record.get("lowered") or []))
        state, done = str(record["state"]), _settled(record)
        seen[job_id] = state
        if spinner is not None:
            spinner.state = state
        with spinner.running() if spinner is not None else contextlib.nullcontext():
            while not done:
                state, done = await _next(session, job_id, inbox, printer, follow, state, notice)
                seen[job_id] = state
                if spinner is not None:
                    spinner.state = state
        if notice.unsaid:
            notice(list((await session.api("describe", job_id)).get("lowered") or []))
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
    notice: _Notice,
) -> tuple[str, bool]:
    """``(state, settled)`` after the next event, or from the store after a quiet spell."""
    try:
        event = await session.wait(inbox.get(), RECHECK_SECONDS)
    except TimeoutError:
        record = await session.api("describe", job_id)
        notice(list(record.get("lowered") or []))
        return str(record["state"]), _settled(record)
    notice(event.lowered)
    notice.heard = notice.heard or event.state is JobState.RUNNING
    if event.kind == "log" and follow:
        printer.chunk(LogChunk(event.stream or "stdout", event.data, event.executor, event.seq))
    if event.state is None:
        return state, False
    return event.state.value, event.kind == "recorded"
