"""One job, from an accepted compute request to its terminal event.

Steps: ``admit`` (runnable? image and network allowed? waited too long? stopped already?) →
publish ``running`` → ``prepare`` (image and user, never root unless the operator allows it,
``spec.job_user``; the container's volumes owned by that user; where results go,
``spec.output_layout``: a result path the job could not write fails it here, before anything
is fetched or created; inputs, network lease, the prebuilt environment of
``executor.depcache``, built first by a separate install container when missing) → ``run``
(create, place result folders and inputs, start, stream logs, wait with timeout and stop:
SIGTERM, then SIGKILL after the job's grace, see ``terminate``) →
``collect`` outputs (a job failed by its install step gets that step's log as its output) →
remove the container (shielded: cancellation cannot skip it; bounded by
``remove_timeout``, see ``executor.removal``) → publish ``result`` and the terminal ``state``.
A job stopped for the executor's shutdown (``JobControl.requeue``) publishes nothing more: its
delivery goes back to the queue.
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

from executor import failures
from executor.addresses import DestinationPolicy, NodeAddresses
from executor.blobs import BlobCache, materialise
from executor.depcache import DepCache, InstallRequest, Prebuilt
from executor.events import EventSink, JobEvents
from executor.failures import JobError
from executor.gateway import HttpGateway, Lease
from executor.inputs import Placement, place_dirs, place_roots, prepare_inputs, top_level
from executor.logstream import LogPump
from executor.outputs import Outputs, collect
from executor.removal import Leftovers
from executor.runner import ContainerRunner, ExitInfo, ImageInfo, RunnerError
from executor.settings import ExecutorSettings
from executor.shielded import uncancellable
from executor.spec import (
    ALWAYS_VOLUMES,
    Limits,
    SpecInputs,
    check_image,
    container_spec,
    docker_params,
    job_user,
    limits,
    network_type,
    numeric_uid,
    output_layout,
    uses_dep_cache,
)
from executor.volumes import SIGXFSZ_EXIT, watch
from shoal.model import Job, JobState, NetworkType
from shoal.units import format_bytes
from shoal.wire import utcnow

log = structlog.get_logger("executor")

LOG_GRACE = 5.0
"""Seconds the log stream may lag behind the container's exit before it is cut."""


@dataclass
class JobControl:
    """How the service reaches a running job: a stop request, or a shutdown requeue."""

    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None
    requeue: bool = False
    attempt: str | None = None
    """The run's execution claim (``executor.claims``), carried by its events."""

    def stop(self, reason: str, *, requeue: bool = False) -> None:
        """Ask the job to stop (kill its container)."""
        if self.reason is None:
            self.reason = reason
            self.requeue = requeue
        self.stopped.set()


@dataclass
class Node:
    """What every job on this executor shares."""

    settings: ExecutorSettings
    runner: ContainerRunner
    sink: EventSink
    gateway: HttpGateway
    executor_id: str
    addresses: NodeAddresses = field(default_factory=NodeAddresses)
    """The node's own addresses, shared with the proxy (refreshed by the service)."""
    blobs: BlobCache | None = None
    """Where blob inputs come from (``executor.blobs``); without it they fail the job."""
    depcache: DepCache = field(init=False)
    leftovers: Leftovers = field(init=False)
    """Removes job containers with a deadline, retrying the ones left behind."""

    def __post_init__(self) -> None:
        self.depcache = DepCache(self.runner, self.settings, self.executor_id)
        self.leftovers = Leftovers(self.runner, deadline=self.settings.remove_timeout)

    def destinations(self) -> DestinationPolicy:
        """Where this node's jobs may connect (url inputs; the proxy has its own)."""
        return DestinationPolicy(
            self.addresses,
            allow_private=self.settings.allow_private_addresses,
            allowed_ports=self.settings.allowed_ports,
        )


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
    volume_limit: int = 0
    outputs: Outputs | None = None
    last_stderr: str = ""


async def execute(job: Job, submitted_at: datetime, node: Node, control: JobControl) -> Outcome:
    """Run ``job`` and publish its events; never raises for a job's own failure."""
    events = JobEvents(node.sink, job.id, node.executor_id, job.owner, control.attempt)
    image = str(job.task.engine.params.get("image", ""))
    waited = max((utcnow() - submitted_at).total_seconds(), 0.0)
    try:
        _admit(job, node.settings, waited)
    except JobError as failure:
        outcome = Outcome(state=JobState.FAILED, error=failure.error, image=image)
        await events.state(JobState.FAILED, ended_at=utcnow(), error=failure.error)
        return outcome
    if control.reason is not None:
        outcome = Outcome(state=JobState.STOPPED, error=f"{failures.STOPPED}: {control.reason}")
        if control.requeue:
            return Outcome(state=None, image=image)
        await events.state(JobState.STOPPED, ended_at=utcnow(), error=outcome.error)
        return outcome

    started_at = utcnow()
    await events.state(JobState.RUNNING, started_at=started_at)
    job_limits = limits(job.task, node.settings, waited)
    run = _Run()
    outcome = Outcome(state=None, image=image, started_at=started_at, notes=job_limits.notes)
    explained: dict[str, str] = {}
    try:
        await _run_job(job, node, control, events, job_limits, run)
    except JobError as failure:
        outcome.state, outcome.error = JobState.FAILED, failure.error
        explained = _log_result(job, failure.log)
    except RunnerError as error:
        outcome.state, outcome.error = JobState.FAILED, f"{failures.INTERNAL}: {error}"
    except Exception as error:  # a bug or an engine surprise: fail the job, keep the executor
        log.exception("job.error", job_id=job.id)
        outcome.state = JobState.FAILED
        outcome.error = f"{failures.INTERNAL}: {type(error).__name__}: {error}"
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


def _log_result(job: Job, log_tar: bytes | None) -> dict[str, str]:
    """A failure's log (a tar) as the job's ``/outputs`` result, when it has one."""
    name = next((r.name for r in job.task.outputs if r.path == "/outputs"), None)
    if log_tar is None or name is None:
        return {}
    return {name: base64.b64encode(gzip.compress(log_tar)).decode("ascii")}


def _admit(job: Job, settings: ExecutorSettings, waited: float) -> None:
    check_image(docker_params(job).image, settings)
    network_type(job.task, settings)
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
    if run.killed_for == "stop":
        ended = failures.ending(run.signal, run.exit.exit_code, job_limits.grace)
        return JobState.STOPPED, f"{failures.STOPPED}: {control.reason}{ended}"
    if run.killed_for == "timeout":
        ended = failures.ending(run.signal, run.exit.exit_code, job_limits.grace)
        return JobState.FAILED, (
            f"{failures.TIMEOUT}: execution exceeded {job_limits.execution_timeout:g}s{ended}"
        )
    if run.killed_for == "disk":
        return JobState.FAILED, (
            f"{failures.OUTPUT_TOO_LARGE}: the job's volumes (/outputs, /code, inputs) held "
            f"more than the {format_bytes(run.volume_limit)} volume limit"
        )
    if run.exit.oom_killed:
        return JobState.FAILED, (
            f"{failures.OOM_KILLED}: the job used more than its memory limit of "
            f"{format_bytes(job_limits.memory)}"
        )
    if run.exit.exit_code == SIGXFSZ_EXIT:
        return JobState.FAILED, (
            f"{failures.OUTPUT_TOO_LARGE}: the command exited with code {SIGXFSZ_EXIT} "
            f"(SIGXFSZ: a file reached the {format_bytes(run.volume_limit)} file size limit)"
        )
    if run.outputs is not None and run.outputs.truncated:
        return JobState.FAILED, f"{failures.OUTPUT_TOO_LARGE}: {run.outputs.error}"
    if run.exit.exit_code != 0:
        return JobState.FAILED, failures.exit_error(run.exit.exit_code, run.last_stderr)
    return JobState.COMPLETED, None


async def _run_job(
    job: Job,
    node: Node,
    control: JobControl,
    events: JobEvents,
    job_limits: Limits,
    run: _Run,
) -> None:
    settings = node.settings
    params = docker_params(job)
    image: ImageInfo = await node.runner.image(params.image, settings.pull_policy)
    user = job_user(image, settings)
    input_roots = list(dict.fromkeys(top_level(item.target) for item in job.task.inputs))
    layout = output_layout(job.task, input_roots, user)
    uid = numeric_uid(user)
    inputs = await materialise(job.task.inputs, node.blobs)
    placements = await prepare_inputs(inputs, settings, uid, node.destinations())
    mounted = [*ALWAYS_VOLUMES, *input_roots, *layout.volumes]
    folders = place_roots(mounted, uid) if uid else []
    folders += place_dirs(layout.dirs, mounted, uid)
    lease: Lease | None = None
    try:
        if network_type(job.task, settings) is NetworkType.HTTP:
            domains = list(job.task.network.domains) if job.task.network else []
            lease = await node.gateway.lease(job.id, domains)
        full = network_type(job.task, settings) is NetworkType.FULL
        network = lease.network if lease else ("bridge" if full else "none")
        network_env = lease.env if lease else {}
        prebuilt = await _environment(
            node, job, image, placements, (network, network_env), job_limits, control
        )
        spec = container_spec(
            job,
            settings,
            SpecInputs(
                executor_id=node.executor_id,
                image=image,
                limits=job_limits,
                input_roots=input_roots,
                output_volumes=layout.volumes,
                network=network,
                network_env=network_env,
                env_volume=prebuilt.volume if prebuilt else None,
            ),
        )
        container = await node.runner.create(spec)
        try:
            placed = [(p, failures.OUTPUT_NOT_WRITABLE) for p in folders]
            if prebuilt is not None and prebuilt.log is not None:
                log_tar = Placement("/outputs", prebuilt.log, "the install log")
                placed.append((log_tar, failures.INTERNAL))
            for placement, category in placed + [(p, failures.INPUT_FAILED) for p in placements]:
                try:
                    await node.runner.put_archive(container, placement.root, placement.tar)
                except RunnerError as error:
                    raise JobError(category, f"{placement.what}: {error}") from None
            await _run_container(node, container, control, events, job_limits, run)
            if not control.requeue:
                run.outputs = await collect(
                    node.runner, container, job.task.outputs, settings.job_output_limit
                )
        finally:
            await uncancellable(node.leftovers.remove(container))
    finally:
        if lease is not None:
            await uncancellable(node.gateway.release(job.id))


async def _environment(
    node: Node,
    job: Job,
    image: ImageInfo,
    placements: list[Placement],
    network: tuple[str, dict[str, str]],
    job_limits: Limits,
    control: JobControl,
) -> Prebuilt | None:
    """The job's prebuilt environment, when its image gets them (``executor.depcache``)."""
    params = docker_params(job)
    if not uses_dep_cache(params.image, node.settings):
        return None
    request = InstallRequest(
        job_id=job.id,
        image=params.image,
        info=image,
        code_tars=[p.tar for p in placements if p.root == "/code"],
        argv=list(params.parameters),
        env={**params.env, **job.task.env},
        network=network[0],
        network_env=network[1],
        limits=job_limits,
        stopped=control.stopped,
    )
    return await node.depcache.environment(request)


async def _run_container(
    node: Node,
    container: str,
    control: JobControl,
    events: JobEvents,
    job_limits: Limits,
    run: _Run,
) -> None:
    runner = node.runner
    settings = node.settings
    run.volume_limit = settings.volume_limit
    await runner.start(container)
    logs = LogPump(events, settings)
    pump = asyncio.create_task(logs.run(runner, container))
    waiter = asyncio.create_task(runner.wait(container))
    stop = asyncio.create_task(control.stopped.wait())
    guard = asyncio.create_task(
        watch(runner, container, settings.volume_limit, settings.volume_check_seconds)
    )
    try:
        done, _ = await asyncio.wait(
            {waiter, stop, guard},
            timeout=job_limits.execution_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if waiter not in done:
            run.killed_for = "stop" if stop in done else "disk" if guard in done else "timeout"
            grace = 0.0 if run.killed_for == "disk" else job_limits.grace
            run.signal = await terminate(runner, container, waiter, grace)
        run.exit = await waiter
        try:
            await asyncio.wait_for(asyncio.shield(pump), LOG_GRACE)
        except TimeoutError:
            log.warning("logs.cut", container=container, grace=LOG_GRACE)
        run.last_stderr = logs.last_stderr_line()
    finally:
        for task in (stop, waiter, pump, guard):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(stop, waiter, pump, guard, return_exceptions=True)


async def terminate(
    runner: ContainerRunner, container: str, exited: asyncio.Future[ExitInfo], grace: float
) -> str:
    """SIGTERM, then SIGKILL unless the container exited within ``grace`` seconds (at once
    when ``grace`` is 0); the last signal sent."""
    if grace > 0:
        await runner.kill(container, "SIGTERM")
        done, _ = await asyncio.wait({exited}, timeout=grace)
        if done:
            return "SIGTERM"
    await runner.kill(container, "SIGKILL")
    return "SIGKILL"


def monotonic() -> float:
    """Seconds on a monotonic clock (for durations in the summary line)."""
    return time.monotonic()
