"""The requester's ``shoal.dead`` consumer on a real broker: no dead letter leaves a job stuck."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.abc import FieldTable
from structlog.testing import capture_logs
from structlog.typing import EventDict

from shoal.inline import inline_source
from shoal.limits import MiB
from shoal.model import JobState, parse_job
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import NewJob
from shoal.topology import (
    API_QUEUE,
    COMPUTE_QUEUE,
    DEAD_LETTER_EXCHANGE,
    DEAD_QUEUE,
    DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    SUBMIT_QUEUE,
)
from shoal.wire import ClaimItem, ComputeRequest, Submission, SubmitReply, decode, encode

from .amqp import DIRECT_REPLY_TO, Client, bound
from .jobs import docker_job, state
from .test_submit import queue_depth
from .test_sweeper import events_of, requesters

pytestmark = pytest.mark.rabbitmq


async def dead_letter(
    channel: AbstractChannel, queue: str, body: bytes, reason: str, **props: Any
) -> None:
    """Publish ``body`` to ``shoal.dlx`` as the broker does when ``queue`` dead-letters it."""
    death: FieldTable = {
        "count": 1,
        "reason": reason,
        "queue": queue,
        "exchange": "",
        "routing-keys": [queue],
    }
    headers: FieldTable = {
        "x-death": [death],
        "x-first-death-queue": queue,
        "x-first-death-reason": reason,
    }
    exchange = await channel.get_exchange(DEAD_LETTER_EXCHANGE)
    await exchange.publish(aio_pika.Message(body, headers=headers, **props), routing_key=queue)


async def recorded_after_dead_letter(
    requester: Requester, connection: AbstractRobustConnection, job_id: str, queue: str, body: bytes
) -> dict[str, Any]:
    """Dead-letter ``body`` from ``queue`` at the delivery limit, wait until the requester
    recorded job ``job_id``'s outcome, and return its record."""
    async with bound(connection, EVENTS_EXCHANGE, f"job.*.{job_id}.recorded") as done:
        await dead_letter(await connection.channel(), queue, body, "delivery_limit")
        await done.count(1)
    assert requester.store is not None
    return await requester.store.describe(job_id)


async def answer_to_dead(client: Client, submission: Submission, reason: str) -> SubmitReply:
    """The requester's answer to ``submission`` dead-lettered from ``shoal.submit``."""
    correlation = uuid.uuid4().hex
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    client._waiting[correlation] = future
    props = {"reply_to": DIRECT_REPLY_TO, "correlation_id": correlation}
    await dead_letter(client.channel, SUBMIT_QUEUE, encode(submission), reason, **props)
    return decode(await asyncio.wait_for(future, 10), SubmitReply)


async def test_a_compute_message_past_the_delivery_limit_fails_its_job(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    """A stand-in executor gives every delivery back; the broker dead-letters the message
    after the limit, and the requester fails the job."""
    deliveries = 0
    channel = await connection.channel()
    compute = await channel.get_queue(COMPUTE_QUEUE)

    async def give_back(message: AbstractIncomingMessage) -> None:
        nonlocal deliveries
        deliveries += 1
        await message.nack(requeue=True)

    tag = await compute.consume(give_back)
    try:
        async with bound(connection, EVENTS_EXCHANGE, "job.*.*.recorded") as done:
            reply = await client.submit(Submission(job=docker_job()))
            await done.count(1, deadline=20)
    finally:
        await compute.cancel(tag)
        await channel.close()
    assert deliveries == DELIVERY_LIMIT + 1
    assert requester.store is not None
    record = await requester.store.describe(str(reply.job_id))
    assert record["state"] == JobState.FAILED
    assert record["error"] == (
        "delivery limit reached: taken more than 5 times and never finished "
        "(dead-lettered from shoal.compute)"
    )
    assert [e.state for e in events_of(done)] == [JobState.FAILED]


async def test_a_dead_compute_message_says_the_last_error(
    requester: Requester, connection: AbstractRobustConnection
) -> None:
    """The first attempt failed on an engine error and was retried; its next compute message
    dies at the delivery limit: the job fails with both reasons and the attempts made."""
    assert requester.store is not None
    engine_params = {"type": "docker", "params": {"image": "busybox"}}
    job = parse_job({"tasks": [{"engine": engine_params, "retries": {"attempts": 1}}]})
    await requester.store.add_jobs([NewJob(job, job)])
    await requester.store.mark_queued([job.id])
    item = ClaimItem(job_id=job.id, attempt="a1")
    assert (await requester.store.claim_runs("claim", "ex-1", [item], 30))[0].verdict == "granted"
    engine = "executor error: cannot start the container: the engine went away"
    failed = state(job.id, JobState.FAILED, attempt="a1", error=engine)
    await requester.store.record_events([state(job.id, JobState.RUNNING, attempt="a1"), failed])
    assert (await requester.store.describe(job.id))["state"] == JobState.QUEUED, "retried"
    body = encode(ComputeRequest(job=job))
    record = await recorded_after_dead_letter(requester, connection, job.id, COMPUTE_QUEUE, body)
    assert record["state"] == JobState.FAILED
    assert record["error"] == (
        "delivery limit reached: taken more than 5 times and never finished "
        f"(dead-lettered from shoal.compute; last error: {engine}) (after 2 attempts)"
    )


async def test_a_dead_submission_is_answered(requester: Requester, client: Client) -> None:
    lost = await answer_to_dead(client, Submission(job=docker_job()), "expired")
    assert lost.error is not None
    assert lost.error.type == "UnavailableError"
    assert lost.error.message == (
        "not accepted: its submission was dead-lettered from shoal.submit: "
        "expired before anyone took it"
    )
    queued = Submission(job=docker_job())
    accepted = await client.submit(queued)
    again = await answer_to_dead(client, queued, "delivery_limit")
    assert (again.error, again.job_id) == (None, accepted.job_id)
    assert requester.store is not None
    assert (await requester.store.describe(str(accepted.job_id)))["state"] == JobState.QUEUED


async def test_a_dead_submission_fails_its_pending_job(
    requester: Requester, connection: AbstractRobustConnection
) -> None:
    job = docker_job()
    assert requester.store is not None
    await requester.store.add_jobs([NewJob(job, job)])
    body = encode(Submission(job=job))
    record = await recorded_after_dead_letter(requester, connection, job.id, SUBMIT_QUEUE, body)
    assert record["state"] == JobState.FAILED
    assert record["error"] == (
        "its submission was dead-lettered from shoal.submit: "
        "delivery limit reached: taken more than 5 times and never finished"
    )


async def test_other_dead_letters_are_acked_and_dropped(
    requester_settings: RequesterSettings, client: Client, connection: AbstractRobustConnection
) -> None:
    async with requesters(requester_settings):
        await dead_letter(client.channel, API_QUEUE, b'{"op": "list"}', "rejected")
        await dead_letter(client.channel, COMPUTE_QUEUE, b"not json", "rejected")
        await dead_letter(client.channel, SUBMIT_QUEUE, b"not json", "rejected")
        await dead_letter(client.channel, "shoal.elsewhere", b"", "maxlen")
        await answer_to_dead(client, Submission(job=docker_job()), "expired")
    assert await queue_depth(connection, DEAD_QUEUE) == 0  # an unacked one would be back


async def test_a_dead_submission_over_the_limit_is_dropped_unread(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    job = docker_job().model_dump(mode="json")
    job["tasks"][0]["inputs"] = [
        {"source": inline_source("file", "A" * 20 * MiB), "target": "/code/blob"}
    ]
    body = json.dumps({"job": job}).encode()
    unread = asyncio.Event()

    def watch(_logger: object, _method: str, entry: EventDict) -> EventDict:
        if entry["event"] == "dead_letter.unreadable":
            unread.set()
        return entry

    with capture_logs(processors=[watch]) as logs:
        await dead_letter(client.channel, SUBMIT_QUEUE, body, "rejected")
        await asyncio.wait_for(unread.wait(), 10)
    seen = [e for e in logs if e["event"] == "dead_letter.unreadable"]
    assert seen[0]["error"] == "the submission is 20.0 MiB; the limit is 14.3 MiB"
    assert await queue_depth(connection, DEAD_QUEUE) == 0
