"""A container the engine cannot remove never hangs a job slot, a shutdown or the next start."""

from __future__ import annotations

import asyncio
import time

import pytest

from shoal.executor.engines.docker.gateway import MemoryGateway
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.orphans import reap_orphans
from shoal.executor.engines.docker.removal import Leftovers
from shoal.executor.engines.docker.runner import (
    LABEL_EXECUTOR,
    LABEL_NODE,
    ContainerSpec,
    ImageInfo,
)
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl, Node, execute
from shoal.executor.service import Executor, serve
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.model import JobState
from shoal.wire import utcnow

from .conftest import Broker, executor_settings
from .support import BASE_IMAGE, docker_job, docker_node, docker_of

pytestmark = pytest.mark.timeout(30)


class WedgedRunner(MemoryRunner):
    """The twin, with an engine whose ``delete`` hangs until ``unwedge`` is set."""

    def __init__(self) -> None:
        super().__init__(images={BASE_IMAGE: ImageInfo(user="")})
        self.unwedge = asyncio.Event()
        self.attempts = 0

    async def remove(self, container: str) -> None:
        self.attempts += 1
        await self.unwedge.wait()
        await super().remove(container)

    async def close(self) -> None:
        """Like Docker's: the connection goes, the containers stay in the engine."""


def wedged_node(runner: MemoryRunner, remove_timeout: float) -> Node:
    settings = ExecutorSettings(
        node_id="unit",
        pull_policy=PullPolicy.NEVER,
        remove_timeout=remove_timeout,
        allowed_images=[BASE_IMAGE],
    )
    return docker_node(settings, runner, MemoryEventSink(), MemoryGateway(), "exec-unit")


async def test_a_hanging_delete_ends_the_job_and_frees_the_slot() -> None:
    runner = WedgedRunner()
    node = wedged_node(runner, remove_timeout=0.2)
    docker_of(node).leftovers = Leftovers(runner, deadline=0.2, retry_every=0.1)
    began = time.monotonic()
    first = await execute(docker_job("echo one"), utcnow(), node, JobControl())
    second = await execute(docker_job("echo two"), utcnow(), node, JobControl())
    assert time.monotonic() - began < 5
    assert first.state is second.state is JobState.COMPLETED
    assert len(docker_of(node).leftovers.pending) == 2
    assert len(runner.containers) == 2
    runner.unwedge.set()
    async with asyncio.timeout(5):
        await docker_of(node).leftovers.settled()
    assert runner.containers == {}


async def test_shutdown_does_not_wait_for_a_wedged_container() -> None:
    runner = WedgedRunner()
    node = wedged_node(runner, remove_timeout=0.1)
    docker_of(node).leftovers = Leftovers(runner, deadline=0.1, retry_every=0.1)
    await execute(docker_job("true"), utcnow(), node, JobControl())
    assert docker_of(node).leftovers.pending
    async with asyncio.timeout(2):
        await docker_of(node).leftovers.close()
    assert not docker_of(node).leftovers.pending
    assert len(runner.containers) == 1, "left for the next executor's orphan reaping"


async def test_shutdown_removes_what_the_engine_can_remove_again() -> None:
    """An engine back (from a restart) before the next background attempt: closing removes
    the container instead of leaving it to the next executor."""
    runner = WedgedRunner()
    node = wedged_node(runner, remove_timeout=0.1)
    docker_of(node).leftovers = Leftovers(runner, deadline=0.1, retry_every=60)
    await execute(docker_job("true"), utcnow(), node, JobControl())
    assert docker_of(node).leftovers.pending
    runner.unwedge.set()
    async with asyncio.timeout(2):
        await docker_of(node).leftovers.close()
    assert runner.containers == {}


async def test_reaping_skips_a_container_it_cannot_remove() -> None:
    runner = WedgedRunner()
    labels = {LABEL_NODE: "n", LABEL_EXECUTOR: "n-1-gone00"}
    await runner.create(ContainerSpec(image=BASE_IMAGE, labels=labels))
    await runner.create(ContainerSpec(image=BASE_IMAGE, labels=labels))

    async def alive(executor_id: str) -> bool:
        return False

    began = time.monotonic()
    assert await reap_orphans(runner, "n", alive, deadline=0.2) == 0
    assert time.monotonic() - began < 2
    assert runner.attempts == 2
    runner.unwedge.set()
    assert await reap_orphans(runner, "n", alive, deadline=0.2) == 2


async def test_reaping_gives_up_on_an_engine_that_cannot_list() -> None:
    class Unlistable(WedgedRunner):
        async def list_labelled(self, labels: dict[str, str]) -> dict[str, dict[str, str]]:
            await asyncio.Event().wait()
            return {}

    async def alive(executor_id: str) -> bool:
        return False

    assert await reap_orphans(Unlistable(), "n", alive, deadline=0.2) == 0


@pytest.mark.rabbitmq
async def test_an_executor_on_a_wedged_node_starts_runs_jobs_and_stops(
    broker: Broker, broker_url: str
) -> None:
    """A container left by a killed executor that the engine cannot remove: the next executor
    still starts, runs jobs (whose own removal hangs too) and stops on SIGTERM."""
    settings = executor_settings(broker_url, remove_timeout=0.5)
    runner = WedgedRunner()
    orphan = {LABEL_NODE: settings.node_id, LABEL_EXECUTOR: f"{settings.node_id}-1-gone00"}
    await runner.create(ContainerSpec(image=BASE_IMAGE, labels=orphan))
    stopping = asyncio.Event()
    ready: asyncio.Future[Executor] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stopping, runner=runner, ready=ready.set_result))
    async with asyncio.timeout(10):
        await ready
    job = docker_job("echo hello")
    await broker.submit(job)
    assert (await broker.events.terminal(job.id, within=10)).state is JobState.COMPLETED
    stopping.set()
    async with asyncio.timeout(10):
        await task
    assert len(runner.containers) == 2, "both left for the next start's reaping"
