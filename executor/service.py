"""The executor process: consume ``shoal.compute``, obey ``shoal.control``, shut down cleanly.

Start: connect, declare its part of the topology (``declare_executor``), declare this
executor's control queue, set up the HTTP gateway, let each engine clean up what gone
executors of the node left (``Engine.clean_up``; Docker reaps their containers; again every
``reap_every`` seconds while it runs, ``shoal.executor.reaping``), read the
node's own addresses (refreshed every ``address_refresh`` seconds,
``shoal.executor.addresses``), consume the compute queue with ``prefetch = slots`` (and a semaphore
of ``slots``; every job task is held in a set).

Liveness: the control queue is named after the executor (``shoal.executor.<executor id>``) and
is exclusive, so the broker holds it exactly as long as that executor's connection is open;
another client declaring it passively gets ``RESOURCE_LOCKED`` while it lives and ``NOT_FOUND``
once it is gone (:func:`executor_alive`). Reaping uses that: of the containers labelled with
this node, only those whose executor (label ``shoal.executor``) is gone are removed
(``shoal.executor.engines.docker.orphans``), and the same holds for the proxy rules
(``shoal.executor.engines.docker.network``). Several executors may
share a node id.

Per delivery: decode (undecodable → ``reject(requeue=False)``: dead-lettered, logged) →
duplicate check → stop list → wait for a slot → claim the run (``shoal.executor.claims``)
while ``execution.execute`` prepares it → ack once the terminal event is confirmed, or
``nack(requeue)`` when the job was handed back at shutdown. One summary log line per job.

Claims: before a job starts, the executor claims its run from the requester's store under a
new attempt ID (claims of slots that free up together share one request). The claim is
decided while the run is prepared (image, container, inputs), so its round trip costs no
time; nothing of the job's own runs and no event is published before it is granted. Only the
first claim of a job wins; a claim answered ``claimed`` (another executor holds or ran it),
``stopped`` (stopped while queued, durably), ``expired`` or ``unknown`` removes what was
prepared, acks the delivery and publishes nothing. So a compute message published twice (the
requester crashed between the broker's confirm and its store commit) runs once, and a stop
reaches executors that start later. While no requester answers, the claim is retried (the
delivery is held). The lease is renewed in the background; a run whose lease another attempt
took (it lapsed) is handed back, and its late events carry the old attempt, which the
recorder refuses. With ``SHOAL_CLAIMS=false`` (no requester: tests, benchmarks) only this
executor's own duplicate check applies: a job ID already running here is acked and dropped.

Shutdown (first SIGTERM/SIGINT): stop consuming → let running jobs finish until
``drain_timeout`` → stop the rest (SIGTERM, SIGKILL after each job's grace), which requeues
their deliveries → close the engines (Docker: pending container removals, the gateway, the
Docker client), the channel and the connection, in that order. A second signal cancels
everything at once (containers are still removed: that cleanup is shielded). A SIGKILL loses
nothing: the broker requeues unacked deliveries, and the other executors of the node (within
two ``reap_every`` periods) or the next start on the node reap the containers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from shoal.broker import broker_user, connect, connected, consumer_active
from shoal.errors import EXIT_OK, EXIT_UNAVAILABLE, ProtocolError, ShoalError, UnavailableError
from shoal.executor.addresses import NodeAddresses
from shoal.executor.blobs import api_blobs
from shoal.executor.claims import Claims, amqp_claims, new_attempt
from shoal.executor.engine import Engine
from shoal.executor.engines.docker.docker_runner import DockerRunner
from shoal.executor.engines.docker.engine import DockerEngine
from shoal.executor.engines.docker.gateway import HttpGateway, NoGateway
from shoal.executor.engines.docker.network import DockerHttpGateway, ProxyRules
from shoal.executor.engines.docker.runner import ContainerRunner
from shoal.executor.engines.wasm.engine import WasmEngine
from shoal.executor.engines.wasm.python import PythonRuntime, find_python
from shoal.executor.events import AmqpEventSink
from shoal.executor.execution import GRANTED, JobControl, Node, Outcome, execute, monotonic
from shoal.executor.heartbeat import Busy, start_heartbeat
from shoal.executor.reaping import Reapable, keep_reaping
from shoal.executor.settings import ExecutorSettings
from shoal.liveness import executor_alive, executor_queue
from shoal.logs import configure
from shoal.metrics import (
    JOB_DURATION,
    JOBS_FINISHED,
    JOBS_STARTED,
    QUEUE_WAIT,
    SLOTS,
    HealthServer,
    count_reconnects,
    job_type_label,
)
from shoal.names import COMPUTE_QUEUE, PYTHON_WASM
from shoal.requester.translate import default_registry
from shoal.requester.translate.translation import META_JOB_TYPE
from shoal.topology import declare_executor
from shoal.wire import ComputeRequest, ControlMessage, decode, utcnow

log = structlog.get_logger("executor")

SHUTDOWN_REASON = "executor shutting down"
KILL_GRACE = 30.0
"""Seconds stopped jobs get to be killed and cleaned up after the drain deadline, on top of
their stop grace (at most ``stop_grace_max``)."""
LOST_REASON = "its execution claim went to another attempt"
HANDED_BACK = "handed back"
"""A claim left undecided: the executor drains, or the claim failed unexpectedly."""
CLAIM_RETRY_DELAY = 0.5
CLAIM_RETRY_MAX = 10.0
READY_DOCKER_TIMEOUT = 2.0


def new_executor_id(node_id: str) -> str:
    """A unique ID for this executor process on ``node_id``."""
    return f"{node_id}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Jobs:
    """What the executor is doing: job tasks, their controls, and stops seen in advance."""

    slots: asyncio.Semaphore
    remember: int
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    held: Counter[str] = field(default_factory=Counter)
    """Deliveries held (a task each, until settled), by the queue they came from."""
    running: dict[str, JobControl] = field(default_factory=dict)
    stopped: OrderedDict[str, str] = field(default_factory=OrderedDict)
    draining: bool = False

    def spawn(self, work: Coroutine[Any, Any, None], queue: str = COMPUTE_QUEUE) -> None:
        """Run ``work``, the handling of a delivery of ``queue``, as a task held until it ends."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        self.held[queue] += 1
        task.add_done_callback(lambda done: self._ended(done, queue))

    def _ended(self, task: asyncio.Task[None], queue: str) -> None:
        self.tasks.discard(task)
        self.held[queue] -= 1
        if not self.held[queue]:
            del self.held[queue]

    def stop(self, job_id: str, reason: str) -> bool:
        """Stop a running job, or remember the request; True when it was running here."""
        control = self.running.get(job_id)
        if control is not None:
            control.stop(reason)
            return True
        self.stopped[job_id] = reason
        self.stopped.move_to_end(job_id)
        while len(self.stopped) > self.remember:
            self.stopped.popitem(last=False)
        return False

    def admit(self, job_id: str) -> JobControl:
        """Register a job about to run, applying a stop that came before it."""
        control = JobControl()
        self.running[job_id] = control
        reason = self.stopped.pop(job_id, None)
        if reason is not None:
            control.stop(reason)
        return control


class Executor:
    """One executor: a node context plus the bookkeeping of its deliveries."""

    def __init__(self, node: Node, claims: Claims | None = None) -> None:
        self.node = node
        self.claims = claims
        settings = node.settings
        self.jobs = Jobs(slots=asyncio.Semaphore(settings.slots), remember=settings.stopped_memory)
        self.job_types = frozenset(default_registry().job_types())

    def lost(self, job_id: str) -> None:
        """A running job's claim went to another attempt: hand the run back."""
        control = self.jobs.running.get(job_id)
        if control is not None:
            control.stop(LOST_REASON, requeue=True)

    async def on_compute(
        self, message: AbstractIncomingMessage, queue: str = COMPUTE_QUEUE
    ) -> None:
        """Consumer callback of compute queue ``queue``: start the job's task and return."""
        self.jobs.spawn(self._handle(message), queue)

    async def on_control(self, message: AbstractIncomingMessage) -> None:
        """Control-queue callback (no ack needed: the private queue is auto-ack)."""
        try:
            control = decode(message.body, ControlMessage)
        except ProtocolError as error:
            log.warning("control.refused", error=error.message)
            return
        if control.action == "stop":
            here = self.jobs.stop(control.job_id, control.reason)
            log.info("control.stop", job_id=control.job_id, running_here=here)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            request = decode(message.body, ComputeRequest)
        except ProtocolError as error:
            log.error("compute.refused", error=error.message, delivery=message.delivery_tag)
            await _settle(message.reject(requeue=False))
            return
        job = request.job
        if job.id in self.jobs.running:
            log.warning(
                "compute.duplicate",
                job_id=job.id,
                delivery=message.delivery_tag,
                redelivered=bool(message.redelivered),
            )
            await _settle(message.ack())
            return
        control = self.jobs.admit(job.id)  # before any await: a duplicate now sees it
        try:
            async with self.jobs.slots:
                await self._run(message, request, control)
        except Exception as error:  # never leave a delivery unsettled: it would hold a slot
            log.exception("delivery.failed", job_id=job.id, error=f"{type(error).__name__}")
            await _settle(message.nack(requeue=True))
        finally:
            self.jobs.running.pop(job.id, None)

    async def _run(
        self, message: AbstractIncomingMessage, request: ComputeRequest, control: JobControl
    ) -> None:
        if self.jobs.draining:
            await _settle(message.nack(requeue=True))
            return
        job = request.job
        structlog.contextvars.bind_contextvars(job_id=job.id)
        job_type = job_type_label(job.meta.get(META_JOB_TYPE), job.engine_type, self.job_types)
        waited = max(0.0, (utcnow() - request.submitted_at).total_seconds())

        def started(claim: asyncio.Task[str] | None = None) -> None:
            if claim is None or (not claim.cancelled() and claim.result() == GRANTED):
                JOBS_STARTED.labels(job_type).inc()
                QUEUE_WAIT.labels(job_type).observe(waited)

        if self.claims is None:
            started()
        else:  # decided while the run is prepared; it counts as started once granted
            control.claim = asyncio.create_task(self._claim(job.id, control))
            control.claim.add_done_callback(started)
        began = monotonic()
        outcome: Outcome | None = None
        try:
            outcome = await execute(job, request.submitted_at, self.node, control)
        except Exception as error:
            log.exception("job.crashed", error=f"{type(error).__name__}: {error}")
        finally:
            if control.claim is not None:
                control.claim.cancel()  # no-op once decided
        verdict = _verdict(control.claim)
        if verdict != GRANTED:
            await self._skip(message, verdict)
            return
        state = "requeued" if outcome is None or outcome.state is None else str(outcome.state)
        JOBS_FINISHED.labels(state, job_type).inc()
        JOB_DURATION.labels(job_type).observe(monotonic() - began)
        if self.claims is not None:
            if outcome is None or outcome.state is None:
                await self.claims.release(job.id)
            self.claims.forget(job.id)
        if outcome is None or outcome.state is None:
            await _settle(message.nack(requeue=True))
        else:
            await _settle(message.ack())
        _summary(job.id, outcome, monotonic() - began, bool(message.redelivered))

    async def _skip(self, message: AbstractIncomingMessage, verdict: str) -> None:
        """A run whose claim was not granted: ack it when refused, hand it back otherwise."""
        if verdict == HANDED_BACK:
            await _settle(message.nack(requeue=True))
        else:
            log.info("compute.skipped", verdict=verdict, redelivered=bool(message.redelivered))
            await _settle(message.ack())
        structlog.contextvars.unbind_contextvars("job_id")

    async def _claim(self, job_id: str, control: JobControl) -> str:
        """Claim the run, retrying while no requester answers: its verdict (``granted`` sets
        ``control.attempt``), or ``HANDED_BACK`` when the executor drains meanwhile or the
        claim fails unexpectedly."""
        assert self.claims is not None
        delay, attempt = CLAIM_RETRY_DELAY, new_attempt()
        try:
            while not self.jobs.draining:
                try:
                    verdict, _ = await self.claims.claim(job_id, attempt)
                except ShoalError as error:
                    log.warning("claim.retry", error=error.message, delay=delay)
                else:
                    if verdict == GRANTED:
                        control.attempt = attempt
                    return verdict
                await asyncio.sleep(delay)
                delay = min(delay * 2, CLAIM_RETRY_MAX)
        except Exception as error:  # never leave the delivery unsettled
            log.exception("claim.failed", error=f"{type(error).__name__}: {error}")
        return HANDED_BACK

    async def drain(self, deadline: float) -> None:
        """Let running jobs finish until ``deadline`` seconds, then hand the rest back."""
        self.jobs.draining = True
        if self.jobs.tasks:
            _, pending = await asyncio.wait(set(self.jobs.tasks), timeout=deadline)
            if pending:
                log.info("executor.requeue", jobs=sorted(self.jobs.running))
                for control in self.jobs.running.values():
                    control.stop(SHUTDOWN_REASON, requeue=True)
                grace = self.node.settings.stop_grace_max + KILL_GRACE
                _, pending = await asyncio.wait(pending, timeout=grace)
                for task in pending:
                    task.cancel()

    async def cancel_all(self) -> None:
        """Cancel every job task and wait for their (shielded) cleanups."""
        for task in self.jobs.tasks:
            task.cancel()
        await asyncio.gather(*self.jobs.tasks, return_exceptions=True)


async def _settle(action: Awaitable[Any]) -> None:
    try:
        await action
    except Exception as error:  # the channel went away: the broker requeues the delivery
        log.warning("delivery.unsettled", error=f"{type(error).__name__}: {error}")


def _verdict(claim: asyncio.Task[str] | None) -> str:
    """A run's claim verdict once ``execute`` returned: ``granted`` without claims;
    ``HANDED_BACK`` when it was never decided (the run crashed or was cancelled first)."""
    if claim is None:
        return GRANTED
    if not claim.done() or claim.cancelled():
        return HANDED_BACK
    return claim.result()


def _summary(job_id: str, outcome: Outcome | None, duration: float, redelivered: bool) -> None:
    if outcome is None:
        log.error("job.summary", job_id=job_id, state="requeued", duration=round(duration, 3))
        return
    log.info(
        "job.summary",
        job_id=job_id,
        image=outcome.image,
        state=outcome.state or "requeued",
        exit_code=outcome.exit_code,
        error=outcome.error,
        duration=round(duration, 3),
        redelivered=redelivered,
        notes=outcome.notes or None,
    )
    structlog.contextvars.unbind_contextvars("job_id")


async def serve(
    settings: ExecutorSettings,
    stopping: asyncio.Event,
    *,
    runner: ContainerRunner | None = None,
    ready: Callable[[Executor], None] | None = None,
) -> None:
    """Run an executor until ``stopping`` is set, then shut down in steps."""
    executor_id = new_executor_id(settings.node_id)
    structlog.contextvars.bind_contextvars(executor=executor_id)
    runner = runner or await _docker_runner(settings)
    gateway: HttpGateway = NoGateway("not started")
    addresses = NodeAddresses()
    refresher: asyncio.Task[None] | None = None
    reaper: asyncio.Task[None] | None = None
    connection = None
    executor: Executor | None = None
    keeper: asyncio.Task[None] | None = None
    health: HealthServer | None = None
    beating: asyncio.Task[None] | None = None
    docker: DockerEngine | None = None
    try:
        connection = await connect(
            settings.broker_url.get_secret_value(), name=f"shoal-executor {executor_id}"
        )
        count_reconnects(connection)
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=settings.slots)
        python = find_python()
        served = tuple(_served(settings, runner, python))
        topology = await declare_executor(channel, claims=settings.claims, engines=served)
        control_queue = await channel.declare_queue(
            executor_queue(executor_id), exclusive=True, auto_delete=True
        )
        live = connection

        async def alive(other: str) -> bool:
            return await executor_alive(live, other)

        if isinstance(runner, DockerRunner):
            addresses = NodeAddresses(runner.docker.networks.list)
            gateway = await DockerHttpGateway.start(
                runner.docker, settings, executor_id, alive, addresses
            )
        await addresses.refresh()
        refresher = asyncio.create_task(addresses.keep_fresh(settings.address_refresh))
        sink = await AmqpEventSink.open(
            connection,
            broker_user(settings.broker_url.get_secret_value()),
            survive=settings.claim_lease,
        )
        engines: dict[str, Engine] = {}
        if runner is not None:
            docker = DockerEngine(settings, runner, gateway, executor_id, addresses)
            engines[docker.name] = docker
        if "wasm" in served:
            wasm = WasmEngine(settings, addresses, python=python, executor_id=executor_id)
            engines[wasm.name] = wasm
        for engine in engines.values():
            await engine.clean_up(alive)
        if settings.reap_every:
            reapable: list[Reapable] = list(engines.values())
            if isinstance(gateway, DockerHttpGateway):
                reapable.append(ProxyRules(settings.node_id))
            reaper = asyncio.create_task(
                keep_reaping(
                    reapable,
                    alive,
                    executor_id,
                    settings.reap_every,
                    2 * settings.remove_timeout,
                )
            )
        blobs = await api_blobs(
            await connection.channel(publisher_confirms=True),
            settings,
            broker_user(settings.broker_url.get_secret_value()),
        )
        node = Node(settings, engines, sink, executor_id, blobs=blobs)
        claims = await amqp_claims(connection, settings, executor_id) if settings.claims else None
        executor = Executor(node, claims)
        if claims is not None:
            keeper = asyncio.create_task(claims.keep(executor.lost))
        await control_queue.bind(topology.control)
        await control_queue.consume(executor.on_control, no_ack=True)
        consuming: list[tuple[AbstractQueue, str]] = []
        for queue in topology.queues.values():
            callback = partial(executor.on_compute, queue=queue.name)
            consuming.append((queue, await queue.consume(callback)))
        health = await _health(settings, executor, connection, runner, consuming)
        jobs = executor.jobs
        beating = start_heartbeat(
            connection,
            settings,
            executor_id,
            served,
            lambda: Busy(list(jobs.running), dict(jobs.held), jobs.draining),
            docker.held_images if docker is not None else None,
        )
        log.info(
            "executor.ready", slots=settings.slots, node=settings.node_id, engines=list(served)
        )
        if ready is not None:
            ready(executor)
        await stopping.wait()
        log.info("executor.draining", running=len(executor.jobs.running))
        for queue, tag in consuming:
            await queue.cancel(tag)
        await executor.drain(settings.drain_timeout)
    finally:
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if beating is not None:
            beating.cancel()
            steps.append(("heartbeat", lambda: asyncio.gather(beating, return_exceptions=True)))
        if health is not None:
            steps.append(("health", health.close))
        if refresher is not None:
            refresher.cancel()
        if reaper is not None:
            reaper.cancel()
            steps.append(("reaper", lambda: asyncio.gather(reaper, return_exceptions=True)))
        if executor is not None:
            steps.append(("jobs", executor.cancel_all))
        if keeper is not None:
            keeper.cancel()
            steps.append(("leases", lambda: asyncio.gather(keeper, return_exceptions=True)))
        if docker is not None:
            steps.append(("engine", docker.close))
        elif runner is not None:
            steps += [("gateway", gateway.close), ("engine", runner.close)]
        if connection is not None:
            steps.append(("broker", connection.close))
        await shut_down(steps)
        log.info("executor.stopped")


def _served(
    settings: ExecutorSettings, runner: ContainerRunner | None, python: PythonRuntime | None
) -> list[str]:
    """The lanes (``shoal.names.lane``) this executor serves: docker when it has a runner,
    wasm unless ``settings.engines`` leaves it out, and wasm's python lane when it has the
    python runtime too."""
    served = ["docker"] if runner is not None else []
    if not settings.engines or "wasm" in settings.engines:
        served.append("wasm")
        if python is not None:
            served.append(PYTHON_WASM)
    return served


async def _docker_runner(settings: ExecutorSettings) -> DockerRunner | None:
    """The Docker engine's runner when this executor serves it: always when
    ``settings.engines`` names it, when its engine answers if ``settings.engines`` is empty
    (serve every engine the node can run), never otherwise."""
    if settings.engines and "docker" not in settings.engines:
        return None
    runner = DockerRunner.connect(settings.docker_url, pull_timeout=settings.pull_timeout)
    if settings.engines:
        return runner
    try:
        async with asyncio.timeout(READY_DOCKER_TIMEOUT):
            await runner.docker.version()
    except Exception as error:
        log.warning("engine.docker_unavailable", error=f"{type(error).__name__}: {error}")
        await runner.close()
        return None
    return runner


async def shut_down(steps: list[tuple[str, Callable[[], Awaitable[object]]]]) -> None:
    """Run every shutdown step in order; one that fails is logged and the next still runs
    (a broker gone mid-shutdown must not leave the proxy's firewall rule behind)."""
    for name, step in steps:
        try:
            await step()
        except Exception as error:
            log.warning(
                "executor.shutdown_step_failed", step=name, error=f"{type(error).__name__}: {error}"
            )


async def _health(
    settings: ExecutorSettings,
    executor: Executor,
    connection: AbstractRobustConnection,
    runner: ContainerRunner | None,
    compute: list[tuple[AbstractQueue, str]],
) -> HealthServer:
    """Slot gauges, and ``/metrics``, ``/livez``, ``/readyz`` (ready: connected, not
    draining, consuming every ``compute`` queue, and the Docker engine answers within
    ``READY_DOCKER_TIMEOUT``)."""
    slots = settings.slots

    def busy() -> int:
        return min(len(executor.jobs.running), slots)

    SLOTS.labels("busy").set_function(busy)
    SLOTS.labels("free").set_function(lambda: slots - busy())

    async def ready() -> str | None:
        if not connected(connection):
            return "not connected to the broker"
        if executor.jobs.draining:
            return "draining"
        for queue, tag in compute:
            if not await consumer_active(queue, tag):
                return f"not consuming {queue.name}"
        if isinstance(runner, DockerRunner):
            try:
                async with asyncio.timeout(READY_DOCKER_TIMEOUT):
                    await runner.docker.version()
            except Exception as error:
                return f"the Docker engine does not answer: {type(error).__name__}"
        return None

    health = HealthServer(
        settings.metrics_host, settings.metrics_port, ready, port_file=settings.metrics_port_file
    )
    await health.start()
    return health


async def _main(settings: ExecutorSettings) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    main = asyncio.current_task()
    signals = 0

    def on_signal(number: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("executor.signal", signal=number.name, action="drain")
            stopping.set()
        elif main is not None:
            log.warning("executor.signal", signal=number.name, action="exit now")
            main.cancel()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    try:
        await serve(settings, stopping)
    except UnavailableError as error:
        log.error("executor.unavailable", error=error.message)
        return EXIT_UNAVAILABLE
    except asyncio.CancelledError:
        return 130
    return EXIT_OK


def run(settings: ExecutorSettings) -> int:
    """Run an executor in the foreground until SIGTERM; returns the process exit code."""
    configure(settings.log_format, settings.log_level)
    return asyncio.run(_main(settings))
