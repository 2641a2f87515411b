"""Retried runs end to end: a requester and an executor (real RabbitMQ, in-memory containers).

An engine failure on the first attempt is retried by the job's policy and the job completes
on the second, with both attempts in ``describe``; a run lost at the delivery limit is
retried as ``lost``; a non-zero exit is retried only when the
policy lists ``exit``; when the attempts run out the job fails and says how many were made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ImageInfo, RunnerError
from shoal.executor.service import serve
from shoal.executor.settings import ExecutorSettings
from shoal.model import TERMINAL_STATES, Job, JobState
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.topology import COMPUTE_QUEUE, DELIVERY_LIMIT

from ..executor.support import BASE_IMAGE, docker_job
from .amqp import Client
from .test_claimed_runs import Recorded, submit
from .test_recorder_api import api

pytestmark = pytest.mark.rabbitmq

RETRIES = {"backoff": "100ms", "backoff_max": "100ms"}


class FlakyEngine(MemoryRunner):
    """Fails to start the first ``failures`` containers, as a Docker engine error would."""

    def __init__(self, failures: int) -> None:
        super().__init__(images={BASE_IMAGE: ImageInfo(user="")})
        self.failures = failures
        self.starts = 0

    async def start(self, container: str) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise RunnerError("cannot start the container: the engine went away")
        await super().start(container)


Start = Callable[[MemoryRunner], Awaitable[None]]


@pytest.fixture
def requester_settings(requester_settings: RequesterSettings) -> RequesterSettings:
    """Sweep often, so a due retry is republished at once."""
    return requester_settings.model_copy(update={"sweep_interval": 0.1})


@pytest.fixture
async def start_executor(requester: Requester) -> AsyncIterator[Start]:
    """Start one executor (claims on) on the requester's broker with the given runner."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(runner: MemoryRunner) -> None:
        settings = ExecutorSettings(
            broker_url=requester.settings.broker_url.get_secret_value(),
            node_id=f"retries-{uuid.uuid4().hex[:8]}",
            slots=1,
            pull_policy="never",
            allowed_images=[BASE_IMAGE],
            log_format="json",
        )
        stopping = asyncio.Event()
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(settings, stopping, runner=runner, ready=ready.set_result))
        stops.append((stopping, task))
        await asyncio.wait_for(ready, 30)

    yield start
    for stopping, task in stops:
        stopping.set()
        await asyncio.wait_for(task, 30)


def retried(script: str, **policy: Any) -> Job:
    return docker_job(script, retries={**RETRIES, **policy})


async def ended(client: Client, job_id: str, within: float = 30.0) -> dict[str, Any]:
    """The job's record once it ended and every event of it is recorded."""
    async with asyncio.timeout(within):
        while True:
            record: dict[str, Any] = (await api(client, "describe", job_id)).result
            # as ``--wait`` does: ``state`` and ``recorded`` are read one after the other
            if record["state"] in TERMINAL_STATES and record["recorded"]:
                return record
            await asyncio.sleep(0.05)


def attempts(record: dict[str, Any]) -> list[tuple[int, str]]:
    return [(run["attempt"], run["state"]) for run in record["executions"]]


async def test_an_engine_failure_is_retried_and_the_job_completes_on_its_second_attempt(
    requester: Requester, client: Client, start_executor: Start
) -> None:
    recorded = Recorded(requester)
    engine = FlakyEngine(failures=1)
    await start_executor(engine)
    job_id = await submit(client, retried("echo second time lucky", attempts=2))
    record = await ended(client, job_id)
    assert record["state"] == JobState.COMPLETED
    assert attempts(record) == [(1, "failed"), (2, "completed")]
    assert record["executions"][0]["error"].startswith("executor error: cannot start")
    assert engine.starts == 2
    states = [e.state for e in recorded.events if e.job_id == job_id and e.kind == "state"]
    assert states == [JobState.RUNNING, JobState.FAILED, JobState.RUNNING, JobState.COMPLETED]
    logs = (await api(client, "logs", job_id)).result
    assert [chunk["data"] for chunk in logs["chunks"]] == ["second time lucky\n"]


async def test_a_non_zero_exit_is_retried_only_when_the_policy_says_exit(
    requester: Requester, client: Client, start_executor: Start
) -> None:
    await start_executor(MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")}))
    plain = await submit(client, retried("exit 3", attempts=2))
    record = await ended(client, plain)
    assert (record["state"], record["exit_code"]) == (JobState.FAILED, 3)
    assert record["error"].endswith("(after 1 attempt)")
    assert attempts(record) == [(1, "failed")]
    asked = await submit(client, retried("exit 3", attempts=2, on=["exit"]))
    record = await ended(client, asked)
    assert record["state"] == JobState.FAILED
    assert attempts(record) == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert record["error"].startswith("exit code: ")
    assert record["error"].endswith("(after 3 attempts)")


async def test_exhausted_engine_retries_fail_with_the_count(
    requester: Requester, client: Client, start_executor: Start
) -> None:
    await start_executor(FlakyEngine(failures=10))
    job_id = await submit(client, retried("echo never", attempts=1))
    record = await ended(client, job_id)
    assert record["state"] == JobState.FAILED
    assert record["error"].startswith("executor error: cannot start the container")
    assert record["error"].endswith("(after 2 attempts)")
    assert attempts(record) == [(1, "failed"), (2, "failed")]


async def test_a_lost_run_is_retried_then_fails_with_the_count(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    """A stand-in executor gives every delivery back: the message is dead-lettered at the
    delivery limit, the policy (``lost``) queues the job again, and the second time it ends."""
    deliveries = 0
    channel = await connection.channel()
    compute = await channel.get_queue(COMPUTE_QUEUE)

    async def give_back(message: AbstractIncomingMessage) -> None:
        nonlocal deliveries
        deliveries += 1
        await message.nack(requeue=True)

    tag = await compute.consume(give_back)
    try:
        job_id = await submit(client, retried("echo never", attempts=1))
        record = await ended(client, job_id)
    finally:
        await compute.cancel(tag)
        await channel.close()
    assert deliveries == 2 * (DELIVERY_LIMIT + 1)
    assert record["state"] == JobState.FAILED
    assert record["error"].startswith("delivery limit reached")
    assert record["error"].endswith("(after 2 attempts)")
