"""The engine port: what the engine-neutral job lifecycle (``shoal.executor.execution``) asks of an
execution environment.

An :class:`Engine` admits a job (its own checks: image, network, params) and opens a
:class:`Workload`, an async context manager that prepares everything the run needs and
removes it on exit, whatever happened. The lifecycle starts the workload, streams its
output, waits for it with the job's timeout, stops it (SIGTERM, SIGKILL after the grace),
collects its outputs, and turns the result into events.

Engines: ``shoal.executor.engines.docker`` (Docker, and the in-memory twin of its container runner
for the fast tests) and ``shoal.executor.engines.wasm`` (WebAssembly). Errors a job caused raise
``shoal.executor.failures.JobError``; an engine failure raises :class:`EngineError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shoal.executor.limits import Limits
from shoal.liveness import Alive
from shoal.model import Job

Stream = Literal["stdout", "stderr"]


class EngineError(Exception):
    """The engine failed an operation (not the job's fault)."""


@dataclass(frozen=True)
class ExitInfo:
    """How a workload ended."""

    exit_code: int
    oom_killed: bool = False
    interrupted: bool = False
    """The engine ended it at once when told to stop, without a signal it could handle (a
    WASI module has none), so no grace applied."""


@dataclass
class Outputs:
    """What goes into the ``result`` event."""

    archives: dict[str, str] = field(default_factory=dict)
    """Result name → base64 tar.gz of the folder's contents."""
    truncated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """The result event's error: what was left out, and why."""
        return "; ".join(self.notes) or None


@dataclass(frozen=True)
class Overrun:
    """A workload broke one of the node's storage limits while it ran."""

    limit: int
    """The limit, in bytes (for the job's error)."""


class NotCleared(Exception):  # noqa: N818 - a verdict, not a failure
    """The run may not go on (its execution claim was refused, or the executor hands the
    delivery back): its preparation stops, nothing of the job's own runs, no event is sent."""


class Gate(Protocol):
    """What a workload's preparation watches: the job's stop, and its execution claim, which
    is decided while the workload is prepared (``shoal.executor.claims``)."""

    stopped: asyncio.Event
    """Set when the job is stopped while it is being prepared."""

    async def wait_clear(self) -> None:
        """Return once the run may go on; raise :class:`NotCleared` when it may not. Awaited
        before anything of the job's own runs (an install step, the job itself)."""
        ...


class Workload(Protocol):
    """One job's prepared run."""

    async def start(self) -> None:
        """Start the job."""
        ...

    def logs(self) -> AsyncIterator[tuple[Stream, bytes]]:
        """Output since start, in order, until the job exits."""
        ...

    async def wait(self) -> ExitInfo:
        """Wait for the job to exit."""
        ...

    async def kill(self, signal: str) -> None:
        """Send ``signal`` (``SIGTERM`` or ``SIGKILL``); no error once the job exited."""
        ...

    async def overrun(self) -> Overrun:
        """Return once the job holds more storage than the node allows (never otherwise)."""
        ...

    async def stopped_by_engine(self) -> str | None:
        """Why the engine itself ended the job, when it did so as it went away (it stopped
        or restarted); ``None`` otherwise. Asked once the job exited non-zero without a
        signal from the executor (it may wait a little to tell)."""
        ...

    async def collect(self) -> Outputs:
        """The job's result folders, within the node's output limit."""
        ...


class Engine(Protocol):
    """An execution environment the executor serves (``docker``, ...)."""

    name: str
    """The ``engine.type`` of the jobs it runs."""

    def admit(self, job: Job) -> None:
        """``JobError`` when this node will not run ``job`` (checked before ``running``)."""
        ...

    def describe(self, job: Job) -> str:
        """What the job runs, for the executor's summary line (e.g. the image)."""
        ...

    def workload(
        self, job: Job, limits: Limits, gate: Gate
    ) -> AbstractAsyncContextManager[Workload]:
        """Prepare ``job``'s run; leaving the context removes everything it made. Nothing of
        the job's own runs before ``gate.wait_clear()`` returns (the lifecycle awaits it before
        ``start``; an engine whose preparation runs some, awaits it first)."""
        ...

    async def clean_up(self, alive: Alive) -> None:
        """Remove what the gone executors of this node left behind (at the executor's start,
        before any job, then every ``reap_every`` seconds beside running jobs, see
        ``shoal.executor.reaping``; ``alive`` says which executors still run)."""
        ...

    async def close(self) -> None:
        """Release what the engine holds."""
        ...
