"""Fixtures for the executor tests: runners (twin and real), settings, the base image."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiohttp import web

from shoal.broker import publish
from shoal.executor.engines.docker.docker_runner import DockerRunner
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ContainerRunner, ImageInfo
from shoal.executor.events import MemoryEventSink
from shoal.executor.service import Executor, serve
from shoal.executor.settings import ExecutorSettings
from shoal.model import TERMINAL_STATES, Job, JobState
from shoal.topology import COMPUTE_QUEUE, Topology, declare
from shoal.wire import ComputeRequest, ControlMessage, JobEvent, decode

from .support import BASE_IMAGE, http_server


@pytest.fixture
def test_label() -> str:
    """A label value unique to this test, to find (and clean up) its containers."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(
    params=["memory", pytest.param("docker", marks=pytest.mark.docker)],
)
async def runner(request: pytest.FixtureRequest, test_label: str) -> AsyncIterator[ContainerRunner]:
    """Each runner implementation in turn; containers of the test are removed afterwards."""
    impl: ContainerRunner
    if request.param == "memory":
        impl = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    else:
        impl = DockerRunner.connect()
    try:
        yield impl
    finally:
        for container in await impl.list_labelled({"shoal.test": test_label}):
            await impl.remove(container)
        await impl.close()


@pytest.fixture(scope="session")
def broker_url(private_broker_url: str) -> str:
    """The test broker: this session's private vhost (see ``tests/conftest.py``)."""
    return private_broker_url


class EventLog:
    """Every job event seen on a private queue bound to ``shoal.events``."""

    def __init__(self) -> None:
        self.sink = MemoryEventSink()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        await self.sink.publish(decode(message.body, JobEvent))

    def of(self, job_id: str) -> list[JobEvent]:
        """One job's events, ordered by executor then sequence number."""
        return self.sink.of(job_id)

    async def wait(self, job_id: str, match: Callable[[JobEvent], bool], within: float) -> JobEvent:
        """The first event of ``job_id`` that ``match`` accepts."""
        return await self.sink.wait_for(lambda e: e.job_id == job_id and match(e), within)

    async def terminal(self, job_id: str, within: float = 30.0) -> JobEvent:
        """The job's terminal state event."""
        return await self.wait(
            job_id, lambda e: e.kind == "state" and e.state in TERMINAL_STATES, within
        )

    async def running(self, job_id: str, within: float = 30.0) -> JobEvent:
        """The job's running state event."""
        return await self.wait(
            job_id, lambda e: e.kind == "state" and e.state == JobState.RUNNING, within
        )


@dataclass
class Broker:
    """A channel on the test broker, the declared topology and the event log."""

    channel: AbstractChannel
    topology: Topology
    events: EventLog

    async def submit(self, job: Job, **fields: Any) -> None:
        """Publish ``job`` to ``shoal.compute``."""
        await publish(
            self.channel.default_exchange, COMPUTE_QUEUE, ComputeRequest(job=job, **fields)
        )

    async def stop(self, job_id: str) -> None:
        """Publish a stop request on the control exchange."""
        await publish(self.topology.control, "", ControlMessage(job_id=job_id))


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[Broker]:
    """A purged ``shoal.compute`` and a private view of all job events."""
    connection = await aio_pika.connect_robust(broker_url)
    channel = await connection.channel(publisher_confirms=True)
    topology = await declare(channel)
    await topology.queues[COMPUTE_QUEUE].purge()
    events = EventLog()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.events, routing_key="job.#")
    await queue.consume(events.on_message, no_ack=True)
    try:
        yield Broker(channel=channel, topology=topology, events=events)
    finally:
        await topology.queues[COMPUTE_QUEUE].purge()
        await connection.close()


def executor_settings(broker_url: str, **overrides: Any) -> ExecutorSettings:
    """Settings for a test executor: its own node id, private addresses and the base image
    allowed."""
    values: dict[str, Any] = {
        "broker_url": broker_url,
        "node_id": f"test-{uuid.uuid4().hex[:8]}",
        "slots": 2,
        "claims": False,
        "allow_private_addresses": True,
        "allowed_images": [BASE_IMAGE],
        "log_flush_seconds": 0.05,
        "drain_timeout": 5.0,
        "pull_policy": "never",
        "default_execution_timeout": 60.0,
        "log_format": "json",
    }
    return ExecutorSettings(**(values | overrides))


@dataclass
class RunningExecutor:
    """An executor served in-process."""

    settings: ExecutorSettings
    stopping: asyncio.Event
    task: asyncio.Task[None]
    executor: Executor

    async def stop(self) -> None:
        """Shut it down the way SIGTERM does, and wait for it."""
        self.stopping.set()
        await asyncio.wait_for(self.task, 60)


StartExecutor = Callable[..., Awaitable[RunningExecutor]]


@pytest.fixture
async def start_executor(broker_url: str, broker: Broker) -> AsyncIterator[StartExecutor]:
    """Start in-process executors (stopped at the end of the test)."""
    started: list[RunningExecutor] = []

    async def start(**overrides: Any) -> RunningExecutor:
        settings = executor_settings(overrides.pop("broker_url", broker_url), **overrides)
        stopping = asyncio.Event()
        ready: asyncio.Future[Executor] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(settings, stopping, ready=ready.set_result))
        waiting: set[asyncio.Future[Any]] = {task, ready}
        done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        assert ready in done, "executor did not start within 30 s"
        running = RunningExecutor(settings, stopping, task, ready.result())
        started.append(running)
        return running

    yield start
    for running in started:
        if not running.task.done():
            await running.stop()


@pytest.fixture
async def host_http_server() -> AsyncIterator[int]:
    """A plain HTTP server on every host address; returns its port."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the host\n")

    async with http_server(hello, "0.0.0.0") as port:
        yield port
