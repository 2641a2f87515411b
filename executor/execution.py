"""One job, from an accepted compute request to its terminal event, on any engine.

Steps: ``admit`` (an engine of the job's type served here and willing, ``Engine.admit``;
waited too long? stopped already?) → open the engine's workload (``Engine.workload``:
everything the run needs, removed again on the way out, shielded) while the run's execution
claim is decided (``JobControl.claim``): once it is granted, ``running`` is published, with
the limits the node lowered (``shoal.executor.limits``); a claim not granted stops the
preparation and publishes nothing (no event of a run is sent, and nothing of the job's own
runs, before its claim is granted: ``JobControl.wait_clear``) → ``run`` (start, stream logs, wait
with timeout and stop: SIGTERM, then SIGKILL after the job's grace, see ``terminate``; killed
at once when it holds more storage than the node allows; a non-zero exit the executor did not
cause is checked against its engine going away, ``Workload.stopped_by_engine``: such a job
fails as an engine failure) → ``collect`` outputs (a job failed by a preparation step with a
log, such as the install step of a prebuilt environment, gets that log as its output) →
publish ``result`` and the terminal ``state``. A job stopped for the executor's shutdown
(``JobControl.requeue``) publishes nothing more: its delivery goes back to the queue.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import time
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from shoal.executor import failures
from shoal.executor.blobs import BlobCache, materialise
from shoal.executor.engine import Engine, EngineError, ExitInfo, NotCleared, Outputs, Workload
from shoal.executor.events import EventSink, JobEvents
from shoal.executor.failures import JobError
from shoal.executor.limits import Limits, limits
from shoal.executor.logstream import LogPump
from shoal.executor.settings import ExecutorSettings
from shoal.model import Job, JobState
from shoal.units import format_bytes
from shoal.wire import utcnow

log = structlog.get_logger("executor")

LOG_GRACE = 5.0
"""Seconds the log stream may lag behind the container's exit before it is cut."""


GRANTED = "granted"
"""The verdict of a claim that lets the run go on."""


@dataclass
class JobControl:
    """How the service reaches a running job: a stop request, or a shutdown requeue."""

    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None
    requeue: bool = False
    attempt: str | None = None
    """The run's execution claim (``shoal.executor.claims``), carried by its events."""
    claim: asyncio.Task[str] | None = None
    """The claim being decided (its verdict; ``granted`` sets ``attempt``); ``None``: the
    run needs no claim."""

    async def wait_clear(self) -> None:
        """Return once the run may go on (its claim granted); ``NotCleared`` otherwise."""
        if self.claim is not None and await asyncio.shield(self.claim) != GRANTED:
            raise NotCleared

    def stop(self, reason: str, *, requeue: bool = False) -> None:
        """Ask the job to stop (kill its container)."""
        if self.reason is None:
            self.reason = reason
            self.requeue = requeue
        self.stopped.set()


SIGXFSZ_EXIT = 128 + 25
"""The exit code of a process killed by SIGXFSZ (a file reached ``RLIMIT_FSIZE``)."""


@dataclass
class Node:
    """What every job on this executor shares: its settings, engines and event sink."""

    settings: ExecutorSettings
    engines: dict[str, Engine]
    """Engine type → the engine serving it."""
    sink: EventSink
    executor_id: str
    blobs: BlobCache | None = None
    """Where blob inputs come from (``shoal.executor.blobs``); without it they fail the job."""

    def engine(self, job: Job) -> Engine:
        """The engine for ``job``; ``JobError(UNSUPPORTED)`` when none here serves it."""
        kind = job.task.engine.type
        engine = self.engines.get(kind)
        if engine is None:
            served = ", ".join(sorted(self.engines)) or "none"
            raise JobError(
                failures.UNSUPPORTED,
                f"engine {kind!r} cannot run here; this executor serves {served}",
            )
        return engine


@dataclass
class Outcome:
    """How a job run ended; ``state`` is ``None`` when it was handed back to the queue."""

    state: JobState | None
    exit_code: int | None = None
    error: str | None = None
    image: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Run:
    exit: ExitInfo | None = None
    killed_for: str | None = None  # "stop", "timeout" or "disk"
    signal: str | None = None
    """The last signal the executor sent (``SIGTERM``, or ``SIGKILL`` after the grace)."""
    storage_limit: int = 0
    """The storage limit the job broke (``Workload.overrun``)."""
    file_size_limit: int = 0
    outputs: Outputs | None = None
    last_stderr: str = ""
    engine_gone: str | None = None
    """Why the engine ended the run as it went away (``Workload.stopped_by_engine``)."""


async def execute(job: Job, submitted_at: datetime, node: Node, control: JobControl) -> Outcome:
    """Run ``job`` and publish its events; never raises for a job's own failure. A run whose
    claim is not granted publishes nothing and ends with ``Outcome.state`` ``None``."""
    events = JobEvents(node.sink, job.id, node.executor_id, job.owner)
    image = str(job.task.engine.params.get("image", ""))
    waited = max((utcnow() - submitted_at).total_seconds(), 0.0)
    try:
        engine = node.engine(job)
        image = engine.describe(job)
        _admit(job, engine, waited)
    except JobError as failure:
        if not await _cleared(control, events):
            return Outcome(state=None, image=image)
        await events.state(JobState.FAILED, ended_at=utcnow(), error=failure.error)
        return Outcome(state=JobState.FAILED, error=failure.error, image=image)
    if control.reason is not None:
        if control.requeue or not await _cleared(control, events):
            return Outcome(state=None, image=image)
        error = f"{failures.STOPPED}: {control.reason}"
        await events.state(JobState.STOPPED, ended_at=utcnow(), error=error)
        return Outcome(state=JobState.STOPPED, error=error)

    started_at = utcnow()
    job_limits = limits(job.task, node.settings, waited)
    running = asyncio.create_task(_running(control, events, started_at, job_limits.notes))
    outcome = Outcome(state=None, image=image, started_at=started_at, notes=job_limits.notes)
    run = _Run()
    explained: dict[str, str] = {}
    try:  # prepared while ``running`` (the claim, then the running event) is under way
        try:
            await _run_job(job, engine, node, control, events, job_limits, run, running)
        except NotCleared:
            pass
        except JobError as failure:
            outcome.state, outcome.error = JobState.FAILED, failure.error
            explained = _log_result(job, failure.log)
        except EngineError as error:
            outcome.state, outcome.error = JobState.FAILED, f"{failures.INTERNAL}: {error}"
        except Exception as error:  # a bug or an engine surprise: fail the job, keep the executor
            log.exception("job.error", job_id=job.id)
            outcome.state = JobState.FAILED
            outcome.error = f"{failures.INTERNAL}: {type(error).__name__}: {error}"
        if not await asyncio.shield(running):
            return Outcome(state=None, image=image)
    finally:
        running.cancel()
    outcome.ended_at = utcnow()
    if control.requeue:
        outcome.state = None
        return outcome
    if run.exit is not None:
        outcome.exit_code = run.exit.exit_code
        if outcome.state is None:
            outcome.state, outcome.error = _judge(run, control, job_limits)
        outputs = run.outputs or Outputs()
        await events.result(outputs.archives, outputs.truncated, outputs.error)
    elif explained:
        await events.result(explained, False, None)
    assert outcome.state is not None
    await events.state(
        outcome.state,
        started_at=started_at,
        ended_at=outcome.ended_at,
        exit_code=outcome.exit_code,
        error=outcome.error,
    )
    return outcome


async def _cleared(control: JobControl, events: JobEvents) -> bool:
    """Whether the run may go on (its claim granted; its events then carry the attempt)."""
    try:
        await control.wait_clear()
    except NotCleared:
        return False
    events.attempt = control.attempt
    return True


async def _running(
    control: JobControl, events: JobEvents, started_at: datetime, lowered: list[str]
) -> bool:
    """Once the claim is granted, publish ``running``; False when it is not granted."""
    if not await _cleared(control, events):
        return False
    await events.state(JobState.RUNNING, started_at=started_at, lowered=lowered)
    return True


def _log_result(job: Job, log_tar: bytes | None) -> dict[str, str]:
    """A failure's log (a tar) as the job's ``/outputs`` result, when it has one."""
    name = next((r.name for r in job.task.outputs if r.path == "/outputs"), None)
    if log_tar is None or name is None:
        return {}
    return {name: base64.b64encode(gzip.compress(log_tar)).decode("ascii")}


def _admit(job: Job, engine: Engine, waited: float) -> None:
    engine.admit(job)
    queue_timeout = job.task.timeouts.queue
    if queue_timeout is not None and waited > queue_timeout:
        raise JobError(
            failures.QUEUE_TIMEOUT,
            f"waited {waited:.0f}s in the queue, more than the job's queue timeout of "
            f"{queue_timeout:g}s",
        )
    total = job.task.timeouts.total
    if total is not None and waited >= total:
        raise JobError(
            failures.TIMEOUT, f"the job's total timeout of {total:g}s ran out in the queue"
        )


def _judge(run: _Run, control: JobControl, job_limits: Limits) -> tuple[JobState, str | None]:
    assert run.exit is not None
    ended = failures.ending(run.signal, run.exit.exit_code, job_limits.grace, run.exit.interrupted)
    if run.killed_for == "stop":
        return JobState.STOPPED, f"{failures.STOPPED}: {control.reason}{ended}"
    if run.killed_for == "timeout":
        return JobState.FAILED, (
            f"{failures.TIMEOUT}: execution exceeded {job_limits.execution_timeout:g}s{ended}"
        )
    if run.killed_for == "disk":
        return JobState.FAILED, (
            f"{failures.OUTPUT_TOO_LARGE}: the job's volumes (/outputs, /code, inputs) held "
            f"more than the {format_bytes(run.storage_limit)} volume limit"
        )
    if run.engine_gone is not None:
        return JobState.FAILED, (
            f"{failures.INTERNAL}: {run.engine_gone}{failures.ended_by(run.exit.exit_code)}"
        )
    if run.exit.oom_killed:
        return JobState.FAILED, (
            f"{failures.OOM_KILLED}: the job used more than its memory limit of "
            f"{format_bytes(job_limits.memory)}"
        )
    if run.exit.exit_code == SIGXFSZ_EXIT:
        return JobState.FAILED, (
            f"{failures.OUTPUT_TOO_LARGE}: the command exited with code {SIGXFSZ_EXIT} "
            f"(SIGXFSZ: a file reached the {format_bytes(run.file_size_limit)} file size limit)"
        )
    if run.outputs is not None and run.outputs.truncated:
        return JobState.FAILED, f"{failures.OUTPUT_TOO_LARGE}: {run.outputs.error}"
    if run.exit.exit_code != 0:
        return JobState.FAILED, failures.exit_error(run.exit.exit_code, run.last_stderr)
    return JobState.COMPLETED, None


async def _run_job(
    job: Job,
    engine: Engine,
    node: Node,
    control: JobControl,
    events: JobEvents,
    job_limits: Limits,
    run: _Run,
    running: asyncio.Task[bool],
) -> None:
    inputs = await materialise(job.task.inputs, node.blobs)
    if inputs != job.task.inputs:  # blobs fetched: the engine sees them inline
        task = job.task.model_copy(update={"inputs": inputs})
        job = job.model_copy(update={"tasks": [task]})
    async with engine.workload(job, job_limits, control) as workload:
        if not await asyncio.shield(running):
            raise NotCleared
        await _run_workload(node.settings, workload, control, events, job_limits, run)
        if not control.requeue and run.engine_gone is None:
            run.outputs = await workload.collect()


async def _run_workload(
    settings: ExecutorSettings,
    workload: Workload,
    control: JobControl,
    events: JobEvents,
    job_limits: Limits,
    run: _Run,
) -> None:
    run.file_size_limit = settings.volume_limit
    await workload.start()
    logs = LogPump(events, settings)
    pump = asyncio.create_task(logs.run(workload.logs()))
    waiter = asyncio.create_task(workload.wait())
    stop = asyncio.create_task(control.stopped.wait())
    guard = asyncio.create_task(workload.overrun())
    try:
        done, _ = await asyncio.wait(
            {waiter, stop, guard},
            timeout=job_limits.execution_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if waiter not in done:
            run.killed_for = "stop" if stop in done else "disk" if guard in done else "timeout"
            if run.killed_for == "disk":
                run.storage_limit = guard.result().limit
            grace = 0.0 if run.killed_for == "disk" else job_limits.grace
            run.signal = await terminate(workload, waiter, grace)
        run.exit = await waiter
        try:
            await asyncio.wait_for(asyncio.shield(pump), LOG_GRACE)
        except TimeoutError:
            log.warning("logs.cut", job_id=events.job_id, grace=LOG_GRACE)
        run.last_stderr = logs.last_stderr_line()
        ended = run.exit
        if run.killed_for is None and ended.exit_code != 0 and not ended.oom_killed:
            run.engine_gone = await workload.stopped_by_engine()
            if run.engine_gone is not None:
                log.warning("job.engine_gone", job_id=events.job_id, exit_code=ended.exit_code)
    finally:
        for task in (stop, waiter, pump, guard):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(stop, waiter, pump, guard, return_exceptions=True)


async def terminate(workload: Workload, exited: asyncio.Future[ExitInfo], grace: float) -> str:
    """SIGTERM, then SIGKILL unless the workload exited within ``grace`` seconds (at once
    when ``grace`` is 0); the last signal sent."""
    if grace > 0:
        await workload.kill("SIGTERM")
        done, _ = await asyncio.wait({exited}, timeout=grace)
        if done:
            return "SIGTERM"
    await workload.kill("SIGKILL")
    return "SIGKILL"


def monotonic() -> float:
    """Seconds on a monotonic clock (for durations in the summary line)."""
    return time.monotonic()
