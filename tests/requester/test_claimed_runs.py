"""Claimed runs end to end: a requester and executors (real RabbitMQ, in-memory containers).

A stopped queued job never runs, even on an executor started afterwards, and a compute
message published twice runs once, whichever executors get the copies. A run handed back or
left to lapse by an executor after another executor skipped its compute message ("claimed")
is resent by the sweeper and completes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.broker import publish
from shoal.executor.claims import Claims, amqp_claims
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import LABEL_JOB, ImageInfo
from shoal.executor.service import Executor, serve
from shoal.executor.settings import ExecutorSettings
from shoal.liveness import executor_queue
from shoal.model import TERMINAL_STATES, Job, JobState
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.topology import COMPUTE_QUEUE
from shoal.wire import ComputeRequest, JobEvent, Submission

from ..executor.support import BASE_IMAGE, docker_job
from .amqp import Client
from .test_recorder_api import api

pytestmark = pytest.mark.rabbitmq

Start = Callable[[], Awaitable[tuple[Executor, MemoryRunner]]]


@pytest.fixture
def requester_settings(requester_settings: RequesterSettings) -> RequesterSettings:
    """The suite's requester, sweeping often (lapsed runs are resent by the sweeper), with a
    short grace (a live holder that stops renewing loses its run after it)."""
    return requester_settings.model_copy(update={"sweep_interval": 0.2, "claim_grace": 1.0})


class Recorded:
    """Events as the requester's recorder commits them."""

    def __init__(self, requester: Requester) -> None:
        assert requester.recorder is not None
        self.events: list[JobEvent] = []
        self._changed = asyncio.Event()
        requester.recorder.observers.append(self._seen)

    def _seen(self, event: JobEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def ended(self, *job_ids: str, within: float = 20.0) -> None:
        """Wait until every job of ``job_ids`` has a terminal state recorded."""
        async with asyncio.timeout(within):
            while not set(job_ids) <= {
                e.job_id for e in self.events if e.kind == "state" and e.state in TERMINAL_STATES
            }:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def start_executor(requester: Requester) -> AsyncIterator[Start]:
    """Start executors (claims on) on the requester's broker, each with its own twin runner."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    url = requester.settings.broker_url.get_secret_value()

    async def start() -> tuple[Executor, MemoryRunner]:
        runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
        settings = ExecutorSettings(
            broker_url=url,
            node_id=f"claims-{uuid.uuid4().hex[:8]}",
            slots=1,
            pull_policy="never",
            allowed_images=[BASE_IMAGE],
            log_format="json",
        )
        stopping = asyncio.Event()
        ready: asyncio.Future[Executor] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(settings, stopping, runner=runner, ready=ready.set_result))
        stops.append((stopping, task))
        return await asyncio.wait_for(ready, 30), runner

    yield start
    for stopping, task in stops:
        stopping.set()
        await asyncio.wait_for(task, 30)


async def submit(client: Client, job: Job) -> str:
    reply = await client.submit(Submission(job=job))
    assert reply.job_id is not None
    return reply.job_id


def runs_of(runners: list[MemoryRunner], job_id: str) -> int:
    """Containers started for ``job_id`` by any of ``runners`` (one may be made, never
    started, while a claim that is then refused is decided)."""
    return sum(
        box.started and box.spec.labels.get(LABEL_JOB) == job_id
        for r in runners
        for box in r.created.values()
    )


async def test_a_stopped_queued_job_never_runs_on_an_executor_started_later(
    requester: Requester, client: Client, start_executor: Start
) -> None:
    recorded = Recorded(requester)
    stopped = await submit(client, docker_job("echo never"))
    answer = (await api(client, "stop", stopped)).result
    assert answer == {"job_id": stopped, "state": "stopped", "stopping": False}
    after = await submit(client, docker_job("echo after"))
    _, runner = await start_executor()  # slots=1: it takes the stopped job's message first
    await recorded.ended(after)
    assert runs_of([runner], stopped) == 0
    assert runs_of([runner], after) == 1
    assert not [e for e in recorded.events if e.job_id == stopped and e.executor]
    record: dict[str, Any] = (await api(client, "describe", stopped)).result
    assert record["state"] == "stopped"
    assert record["executions"] == []  # the requester's stop is not a run


async def test_a_compute_message_published_twice_runs_once(
    requester: Requester, client: Client, start_executor: Start
) -> None:
    recorded = Recorded(requester)
    job = docker_job("echo once")
    job_id = await submit(client, job)
    duplicate = ComputeRequest(job=job.model_copy(update={"id": job_id}))
    await publish(client.channel.default_exchange, COMPUTE_QUEUE, duplicate, message_id=job_id)
    barriers = [await submit(client, docker_job("echo barrier")) for _ in range(2)]
    started = [await start_executor(), await start_executor()]
    await recorded.ended(job_id, *barriers)
    runners = [runner for _, runner in started]
    assert runs_of(runners, job_id) == 1
    states = [e.state for e in recorded.events if e.job_id == job_id and e.kind == "state"]
    assert states == [JobState.RUNNING, JobState.COMPLETED]
    record = (await api(client, "describe", job_id)).result
    assert record["state"] == "completed"
    assert len(record["executions"]) == 1


class Verdicts:
    """Claim verdicts as the requester's store gives them (observed, not changed)."""

    def __init__(self, requester: Requester) -> None:
        store = requester.store
        assert store is not None
        self.seen: list[tuple[str, str, str]] = []
        self._changed = asyncio.Event()
        claim_runs = store.claim_runs

        async def observed(op: Any, executor: str, items: Any, lease: float) -> Any:
            found = await claim_runs(op, executor, items, lease)
            self.seen += [
                (executor, i.job_id, c.verdict) for i, c in zip(items, found, strict=True)
            ]
            self._changed.set()
            return found

        store.claim_runs = observed  # type: ignore[method-assign]

    async def wait_for(self, executor: str, job_id: str, verdict: str) -> None:
        async with asyncio.timeout(20):
            while (executor, job_id, verdict) not in self.seen:
                self._changed.clear()
                await self._changed.wait()


async def hand_held_executor(
    connection: AbstractRobustConnection, url: str, lease: float
) -> Claims:
    """A claims client for an executor that is alive (it holds its control queue) but runs
    nothing: the holder of a run whose compute message another executor skipped."""
    settings = ExecutorSettings(broker_url=url, node_id="hand", claim_lease=lease)
    executor_id = f"hand-{uuid.uuid4().hex[:8]}"
    channel = await connection.channel()
    await channel.declare_queue(executor_queue(executor_id), exclusive=True, auto_delete=True)
    return await amqp_claims(connection, settings, executor_id)


@pytest.mark.parametrize("hand_back", ["release", "lapse"])
async def test_a_run_handed_back_after_its_message_was_skipped_is_resent(
    hand_back: str,
    requester: Requester,
    client: Client,
    connection: AbstractRobustConnection,
    start_executor: Start,
) -> None:
    recorded, verdicts = Recorded(requester), Verdicts(requester)
    url = requester.settings.broker_url.get_secret_value()
    holder = await hand_held_executor(connection, url, lease=2.0)
    job_id = await submit(client, docker_job("echo resent"))
    assert (await holder.claim(job_id))[0] == "granted"
    holder.renew_every = 0.2
    renewing = asyncio.create_task(holder.keep(lambda _: None))  # alive until B skipped
    executor, runner = await start_executor()
    assert executor.claims is not None
    await verdicts.wait_for(executor.claims.executor_id, job_id, "claimed")  # skipped, acked
    renewing.cancel()
    if hand_back == "release":
        await holder.release(job_id)  # a drain's hand-back; "lapse": the holder went silent
    await recorded.ended(job_id)
    assert runs_of([runner], job_id) == 1
    record = (await api(client, "describe", job_id)).result
    assert record["state"] == "completed"
    assert [run["attempt"] for run in record["executions"]] == [1]
