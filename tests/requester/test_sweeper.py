"""The sweeper on a real broker, no executor running: queue and total timeouts end jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.errors import NotFoundError
from shoal.model import JobState
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.topology import CONTROL_EXCHANGE, EVENTS_EXCHANGE
from shoal.wire import ControlMessage, JobEvent, Submission, decode

from .amqp import Client, Collector, bound
from .jobs import state, timed_job
from .services import postgres_database

pytestmark = pytest.mark.rabbitmq

SWEEP = 0.3


def events_of(collector: Collector) -> list[JobEvent]:
    return [decode(m.body, JobEvent) for m in collector.messages]


@contextlib.asynccontextmanager
async def requesters(settings: RequesterSettings, count: int = 1) -> AsyncIterator[list[Requester]]:
    """``count`` requesters sharing one store, sweeping every :data:`SWEEP` seconds."""
    running = []
    try:
        for n in range(count):
            update = {"sweep_interval": SWEEP, "name": f"requester-{n}"}
            running.append(Requester(settings.model_copy(update=update)))
            await running[-1].start()
        yield running
    finally:
        for requester in running:
            await requester.stop()


async def test_a_queued_job_expires_without_any_executor(
    requester_settings: RequesterSettings, client: Client, connection: AbstractRobustConnection
) -> None:
    async with (
        requesters(requester_settings) as [requester],
        bound(connection, EVENTS_EXCHANGE, "job.#") as events,
        bound(connection, CONTROL_EXCHANGE) as stops,
    ):
        reply = await client.submit(Submission(job=timed_job(queue=1)))
        assert reply.job_id is not None
        await events.wait_for(lambda _: any(e.kind == "recorded" for e in events_of(events)), 10)
        [stop] = await stops.count(1)
        assert requester.store is not None
        record = await requester.store.describe(reply.job_id)
    assert record["state"] == JobState.FAILED
    assert record["error"] == "expired in the queue: not started within its queue timeout of 1s"
    [failed] = [e for e in events_of(events) if e.kind == "state"]
    assert failed.error == record["error"]
    assert decode(stop.body, ControlMessage).job_id == reply.job_id


async def test_a_running_job_fails_at_its_total_timeout(
    requester_settings: RequesterSettings, client: Client, connection: AbstractRobustConnection
) -> None:
    async with (
        requesters(requester_settings) as [requester],
        bound(connection, CONTROL_EXCHANGE) as stops,
    ):
        reply = await client.submit(Submission(job=timed_job(total=1)))
        assert reply.job_id is not None
        assert requester.store is not None
        await requester.store.record_events([state(reply.job_id, JobState.RUNNING)])
        [stop] = await stops.count(1, deadline=10)
        record = await requester.store.describe(reply.job_id)
    assert decode(stop.body, ControlMessage).reason == "timed out: its total timeout of 1s ran out"
    assert record["state"] == JobState.FAILED
    assert record["error"] == "timed out: its total timeout of 1s ran out"


@pytest.fixture(params=["sqlite", "postgres"])
async def shared_settings(
    request: pytest.FixtureRequest, requester_settings: RequesterSettings
) -> AsyncIterator[RequesterSettings]:
    """Requester settings on the test's SQLite file, or on a fresh Postgres database (the
    store several requesters share in production)."""
    if request.param == "sqlite":
        yield requester_settings
        return
    async with postgres_database() as url:
        yield requester_settings.model_copy(update={"database_url": url})


async def test_several_requesters_fail_each_job_once(
    shared_settings: RequesterSettings, client: Client, connection: AbstractRobustConnection
) -> None:
    async with (
        requesters(shared_settings, count=3),
        bound(connection, EVENTS_EXCHANGE, "job.*.*.state") as events,
    ):
        replies = [await client.submit(Submission(job=timed_job(queue=1))) for _ in range(10)]
        await events.count(10, deadline=15)
        ids = sorted(str(r.job_id) for r in replies)
        ends = [e.job_id for e in events_of(events) if e.state is JobState.FAILED]
        assert sorted(ends) == ids
        more = await client.submit(Submission(job=timed_job(queue=1)))
        await events.count(11, deadline=15)  # a later one: the earlier ones stayed announced once
    ends = [e.job_id for e in events_of(events) if e.state is JobState.FAILED]
    assert sorted(ends) == sorted([*ids, str(more.job_id)])


async def test_an_ended_job_is_pruned_after_the_retention(
    requester_settings: RequesterSettings, client: Client
) -> None:
    settings = requester_settings.model_copy(update={"retention": 1.0})
    async with requesters(settings) as [requester]:
        store = requester.store
        assert store is not None
        reply = await client.submit(Submission(job=timed_job(queue=0.5)))
        assert reply.job_id is not None
        job_id = reply.job_id
        seen: list[str] = []

        async def state_now() -> str:
            try:
                seen.append(str((await store.describe(job_id))["state"]))
            except NotFoundError:
                seen.append("pruned")
            return seen[-1]

        async with asyncio.timeout(30):
            while await state_now() != "pruned":  # noqa: ASYNC110 (polling the store)
                await asyncio.sleep(0.1)
    assert JobState.FAILED in seen  # it expired, then was removed a second later
