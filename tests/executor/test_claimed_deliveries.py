"""The executor's deliveries under execution claims, on the in-memory twins (fast tier)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import REGISTRY

from shoal.executor.claims import Claims, MemoryClaimBook, MemoryClaimTransport
from shoal.executor.engine import NotCleared
from shoal.executor.engines.docker.depcache import DepCache, InstallRequest, tar_of
from shoal.executor.engines.docker.gateway import MemoryGateway
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ImageInfo
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl
from shoal.executor.limits import Limits
from shoal.executor.service import Executor
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.model import Job, JobState
from shoal.names import COMPUTE_QUEUE, WASM_COMPUTE_QUEUE
from shoal.wire import ClaimReply, ClaimRequest, ComputeRequest, encode

from .support import BASE_IMAGE, PYTHON_IMAGE, Delivery, docker_job, docker_node


@dataclass
class Setup:
    executor: Executor
    book: MemoryClaimBook
    runner: MemoryRunner
    sink: MemoryEventSink

    async def deliver(self, job: Job) -> Delivery:
        delivery = Delivery(encode(ComputeRequest(job=job)))
        await self.executor.on_compute(cast(AbstractIncomingMessage, delivery))
        await asyncio.wait_for(delivery.done.wait(), 10)
        return delivery


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    settings = ExecutorSettings(
        node_id="unit", slots=2, pull_policy=PullPolicy.NEVER, allowed_images=[BASE_IMAGE]
    )
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    sink = MemoryEventSink()
    node = docker_node(settings, runner, sink, MemoryGateway(), "exec-unit")
    book = MemoryClaimBook()
    claims = Claims(MemoryClaimTransport(book), "exec-unit", lease=30, renew_every=5)
    executor = Executor(node, claims)
    yield Setup(executor, book, runner, sink)
    await executor.cancel_all()


async def test_a_granted_run_carries_its_attempt(setup: Setup) -> None:
    job = docker_job("echo hi")
    setup.book.add(job.id)
    assert (await setup.deliver(job)).settled == ["ack"]
    events = setup.sink.of(job.id)
    assert events[-1].state is JobState.COMPLETED
    assert {e.attempt for e in events} == {setup.book.holds[job.id].attempt}
    assert setup.executor.claims is not None
    assert setup.executor.claims.held == {}


@pytest.mark.parametrize("verdict", ["stopped", "claimed", "unknown"])
async def test_a_refused_claim_acks_and_runs_nothing(setup: Setup, verdict: str) -> None:
    job = docker_job("echo never")
    if verdict != "unknown":
        setup.book.add(job.id)
    if verdict == "stopped":
        assert setup.book.stop(job.id)
    if verdict == "claimed":
        await Claims(MemoryClaimTransport(setup.book), "exec-other", lease=30, renew_every=5).claim(
            job.id
        )
    assert (await setup.deliver(job)).settled == ["ack"]
    assert_prepared_only(setup.runner)
    assert setup.sink.of(job.id) == []


def assert_prepared_only(runner: MemoryRunner) -> None:
    """The run may have been prepared while its claim was decided, never started, and
    nothing of it is left."""
    assert not any(c.started for c in runner.created.values())
    assert sorted(runner.removed) == sorted(runner.created)
    assert runner.containers == {}


def started_docker_jobs() -> float:
    """``shoal_jobs_started_total`` of plain docker jobs, in this process."""
    return REGISTRY.get_sample_value("shoal_jobs_started_total", {"job_type": "docker"}) or 0.0


async def prepared(runner: MemoryRunner) -> None:
    """Return a moment after ``runner`` made its first container (within 10 s)."""
    for _ in range(1000):
        if runner.created:
            await asyncio.sleep(0.1)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no container was made")


class SlowTransport(MemoryClaimTransport):
    """Claims answered only once ``answer`` is set."""

    def __init__(self, book: MemoryClaimBook) -> None:
        super().__init__(book)
        self.answer = asyncio.Event()

    async def call(self, request: ClaimRequest) -> ClaimReply:
        await self.answer.wait()
        return await super().call(request)


@pytest.mark.parametrize("verdict", ["granted", "stopped"])
async def test_the_run_is_prepared_while_its_claim_is_decided(setup: Setup, verdict: str) -> None:
    """The container is made while the claim is in flight; it starts, and the first event is
    sent, only once the claim is granted; a refused claim leaves nothing behind."""
    transport = SlowTransport(setup.book)
    setup.executor.claims = Claims(transport, "exec-unit", lease=30, renew_every=5)
    job = docker_job("echo hi")
    setup.book.add(job.id)
    if verdict == "stopped":
        assert setup.book.stop(job.id)
    delivery = Delivery(encode(ComputeRequest(job=job)))
    await setup.executor.on_compute(cast(AbstractIncomingMessage, delivery))
    await prepared(setup.runner)
    assert not any(c.started for c in setup.runner.created.values())
    assert setup.sink.of(job.id) == []
    started = started_docker_jobs()
    transport.answer.set()
    await asyncio.wait_for(delivery.done.wait(), 10)
    assert delivery.settled == ["ack"]
    assert started_docker_jobs() == started + (verdict == "granted")
    if verdict == "stopped":
        assert_prepared_only(setup.runner)
        assert setup.sink.of(job.id) == []
    else:
        events = setup.sink.of(job.id)
        assert [e.state for e in events if e.kind == "state"] == [
            JobState.RUNNING,
            JobState.COMPLETED,
        ]
        assert {e.attempt for e in events} == {setup.book.holds[job.id].attempt}


async def test_a_claim_failing_unexpectedly_still_settles_the_delivery(setup: Setup) -> None:
    """An unforeseen error (say, the claims channel closed mid-reconnect) hands the delivery
    back instead of leaving it unsettled, where it would hold a prefetch slot for good."""

    class Broken(MemoryClaimTransport):
        async def call(self, request: ClaimRequest) -> ClaimReply:
            raise RuntimeError("channel closed")

    setup.executor.claims = Claims(Broken(setup.book), "exec-unit", lease=30, renew_every=5)
    job = docker_job("echo never")
    setup.book.add(job.id)
    assert (await setup.deliver(job)).settled == ["requeue"]
    assert_prepared_only(setup.runner)
    assert setup.sink.of(job.id) == []
    assert job.id not in setup.executor.jobs.running


async def test_held_deliveries_are_counted_by_their_queue(setup: Setup) -> None:
    """What the heartbeat's ``held_by_queue`` says: a delivery counts for the compute queue it
    came from while it is held, and no longer once it is settled."""
    jobs = setup.executor.jobs
    jobs.slots = asyncio.Semaphore(0)  # no free slot: the deliveries wait, held
    deliveries = [Delivery(encode(ComputeRequest(job=docker_job(f"echo {n}")))) for n in range(3)]
    await setup.executor.on_compute(cast(AbstractIncomingMessage, deliveries[0]))
    for delivery in deliveries[1:]:
        await setup.executor.on_compute(
            cast(AbstractIncomingMessage, delivery), queue=WASM_COMPUTE_QUEUE
        )
    assert jobs.held == {COMPUTE_QUEUE: 1, WASM_COMPUTE_QUEUE: 2}
    jobs.draining = True  # each hands its delivery back once it gets a slot
    for _ in deliveries:
        jobs.slots.release()
    await asyncio.wait_for(asyncio.gather(*jobs.tasks), 10)
    assert [d.settled for d in deliveries] == [["requeue"]] * 3
    assert jobs.held == {}


async def test_the_install_step_waits_for_the_claim() -> None:
    """An environment to build is prepared, but its install step (which runs package code)
    starts only once the claim is granted; refused, it leaves no container or volume."""
    info = ImageInfo(user="1000", id=f"sha256:{uuid.uuid4().hex}")
    runner = MemoryRunner(images={PYTHON_IMAGE: info})
    cache = DepCache(runner, ExecutorSettings(node_id="unit"), "exec-unit")
    verdict: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def decided() -> str:
        return await verdict

    control = JobControl(claim=asyncio.create_task(decided()))
    request = InstallRequest(
        job_id=docker_job("true").id,
        image=PYTHON_IMAGE,
        info=info,
        code_tars=[tar_of({"requirements.txt": b"tinydep\n"})],
        argv=[],
        env={},
        network="none",
        network_env={},
        limits=Limits(memory=256 * 1024**2, cpu=1.0, execution_timeout=60),
        gate=control,
    )
    building = asyncio.create_task(cache.environment(request))
    await prepared(runner)
    assert not any(c.started for c in runner.created.values())
    verdict.set_result("stopped")
    with pytest.raises(NotCleared):
        await asyncio.wait_for(building, 10)
    assert_prepared_only(runner)
    assert runner.volumes == {}
