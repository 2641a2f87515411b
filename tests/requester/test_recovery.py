"""Crashes, dropped connections and shutdown: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import JobStore
from shoal.topology import COMPUTE_QUEUE
from shoal.wire import ComputeRequest, Submission, SubmitReply, decode

from .amqp import Client, broker, collect
from .jobs import python_job
from .services import rabbitmqctl, vhost_of

pytestmark = pytest.mark.rabbitmq

ROOT = Path(__file__).resolve().parents[2]


async def spawn(*argv: str, settings: RequesterSettings) -> asyncio.subprocess.Process:
    """A requester process (``python ARGV``) on the test vhost and store."""
    env = {
        **os.environ,
        "SHOAL_BROKER_URL": settings.broker_url.get_secret_value(),
        "SHOAL_DATABASE_URL": settings.database_url,
        "SHOAL_LOG_FORMAT": "json",
        "SHOAL_SHUTDOWN_GRACE": "2",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def until_line(process: asyncio.subprocess.Process, text: bytes) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while text not in await process.stdout.readline():
            assert not process.stdout.at_eof(), "the process ended first"


async def settled(store: JobStore, count: int, deadline: float = 20.0) -> list[dict[str, Any]]:
    """The stored jobs once ``count`` are stored and none is ``pending``.

    The requester marks a job ``queued`` after the broker confirmed its compute message, and
    the broker may deliver that message to a consumer before the confirm reaches the
    requester: seeing every compute message does not mean the last commit is done.
    """
    async with asyncio.timeout(deadline):
        while True:
            stored = await store.list_jobs(limit=max(count, 1000))
            if len(stored) >= count and all(j["state"] != "pending" for j in stored):
                return stored
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(settings: RequesterSettings) -> AsyncIterator[Requester]:
    requester = Requester(settings)
    await requester.start()
    try:
        yield requester
    finally:
        await requester.stop()


@pytest.mark.parametrize("step", ["ack", "mark_queued"])
async def test_requester_killed_before_ack_makes_no_second_job(
    step: str,
    requester_settings: RequesterSettings,
    client: Client,
    connection: AbstractRobustConnection,
) -> None:
    job = python_job()
    process = await spawn("-m", "tests.requester.stalled", step, settings=requester_settings)
    async with collect(connection, COMPUTE_QUEUE) as computed:
        try:
            pending = await client.send(Submission(job=job))
            await until_line(process, b"STALLED")
            # The compute message was confirmed; the submission is not acked yet.
        finally:
            process.kill()
            await process.wait()
        async with running(requester_settings) as requester:
            assert pending is not None
            reply = decode(await asyncio.wait_for(pending, 15), SubmitReply)
            assert requester.store is not None
            jobs = await requester.store.list_jobs(limit=10)
        messages = await computed.count(1)
    assert [j["id"] for j in jobs] == [reply.job_id]
    assert jobs[0]["state"] == "queued"
    # "ack": the job was marked queued, so the redelivery only replies: one compute message.
    # "mark_queued": the crash fell between the broker's confirm and the store's commit, the
    # one window at-least-once leaves: the compute message may be repeated, under the same
    # job ID and message_id (executors skip a job ID they already run).
    ids = {decode(m.body, ComputeRequest).job.id for m in messages} | {
        m.message_id for m in messages
    }
    assert ids == {reply.job_id}
    if step == "ack":
        assert len(messages) == 1


async def test_dropped_connections_lose_nothing(
    amqp_url: str, requester_settings: RequesterSettings, client: Client
) -> None:
    count = 600
    settings = requester_settings.model_copy(update={"submit_prefetch": 2})
    jobs = [python_job() for _ in range(count)]
    await asyncio.gather(*(client.send(Submission(job=j), reply=False) for j in jobs))
    async with running(settings) as requester:
        assert requester.store is not None
        await asyncio.to_thread(
            rabbitmqctl, "close_all_connections", "-p", vhost_of(amqp_url), "test"
        )
        assert len(await requester.store.list_jobs(limit=count)) < count, "drop came too late"
        fresh = await broker(amqp_url, name="after-drop")
        try:
            async with collect(fresh, COMPUTE_QUEUE) as computed:
                messages = await computed.wait_for(
                    lambda ms: len({m.message_id for m in ms}) >= count, deadline=60
                )
        finally:
            await fresh.close()
        stored = await settled(requester.store, count)
    assert {m.message_id for m in messages} == {
        decode(m.body, ComputeRequest).job.id for m in messages
    }
    assert len(stored) == count
    assert {j["state"] for j in stored} == {"queued"}


@pytest.mark.skipif(
    os.environ.get("SHOAL_TEST_BROKER_RESTART") == "0",
    reason="SHOAL_TEST_BROKER_RESTART=0: the broker is shared, do not restart it",
)
async def test_broker_restarted_mid_stream_loses_nothing(
    requester_settings: RequesterSettings,
    client: Client,
    connection: AbstractRobustConnection,
) -> None:
    """Stops and starts the RabbitMQ application (every vhost goes down for a few seconds)
    while the requester works through a backlog: quorum queues keep what they held, the
    requester and the test's consumer reconnect, and every submission becomes one queued
    job."""
    count = 400
    settings = requester_settings.model_copy(update={"submit_prefetch": 2})
    jobs = [python_job() for _ in range(count)]
    await asyncio.gather(*(client.send(Submission(job=j), reply=False) for j in jobs))
    async with running(settings) as requester, collect(connection, COMPUTE_QUEUE) as computed:
        assert requester.store is not None
        await computed.count(10, deadline=20)
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        try:
            stored_while_down = len(await requester.store.list_jobs(limit=count))
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
        assert stored_while_down < count, "the restart came too late"
        messages = await computed.wait_for(
            lambda ms: len({m.message_id for m in ms}) >= count, deadline=90
        )
        stored = await settled(requester.store, count)
    assert {m.message_id for m in messages} == {j["id"] for j in stored}
    assert len(stored) == count
    assert {j["state"] for j in stored} == {"queued"}


async def test_sigterm_stops_gracefully(
    requester_settings: RequesterSettings, client: Client
) -> None:
    process = await spawn(
        "-m", "shoal.client.main", "serve", "requester", settings=requester_settings
    )
    try:
        reply = await client.submit(Submission(job=python_job()), deadline=20)
        assert reply.job_id is not None
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert process.stderr is not None
    assert b"requester.stopped" in await process.stderr.read()
