"""The submission pipeline on a real broker: round trip, idempotency, bad submissions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from requester.service import Requester
from requester.submissions import idempotent_id
from shoal.model import JobState, derived_job_id
from shoal.topology import COMPUTE_QUEUE, DEAD_QUEUE
from shoal.wire import ComputeRequest, Submission, decode

from .amqp import Client, collect
from .jobs import docker_job, python_job

pytestmark = pytest.mark.rabbitmq


async def queue_depth(connection: AbstractRobustConnection, name: str) -> int:
    channel = await connection.channel()
    try:
        queue = await channel.get_queue(name)
        declared = await queue.declare()
        return int(declared.message_count or 0)
    finally:
        await channel.close()


async def test_round_trip_returns_the_translated_id(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    job = python_job("python", "app.py")
    async with collect(connection, COMPUTE_QUEUE) as computed:
        reply = await client.submit(Submission(job=job))
        [message] = await computed.count(1)
    assert reply.error is None
    assert reply.original_id == job.id
    assert reply.job_id == derived_job_id(job.id)
    request = decode(message.body, ComputeRequest)
    assert request.job.id == reply.job_id == message.message_id
    assert request.job.engine_type == "docker"
    assert requester.store is not None
    record = await requester.store.describe(job.id)
    assert record["id"] == reply.job_id
    assert record["state"] == JobState.QUEUED


async def test_native_job_keeps_its_id(requester: Requester, client: Client) -> None:
    job = docker_job()
    reply = await client.submit(Submission(job=job))
    assert reply.job_id == reply.original_id == job.id


async def test_redelivered_submission_is_one_job(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    body = Submission(job=python_job())
    first = await client.submit(body)
    again = await client.submit(body)
    assert first.job_id == again.job_id
    assert await queue_depth(connection, COMPUTE_QUEUE) == 1
    assert requester.store is not None
    assert len(await requester.store.list_jobs(limit=10)) == 1


async def test_idempotency_key_names_the_job(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    replies = await asyncio.gather(
        *(
            client.submit(Submission(job=python_job(), idempotency_key=key))
            for key in ("k1", "k1", "k1", "k2")
        )
    )
    ids = [r.job_id for r in replies]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert replies[0].original_id == idempotent_id("k1")
    assert await queue_depth(connection, COMPUTE_QUEUE) == 2


def _job_json() -> dict[str, Any]:
    return json.loads(Submission(job=python_job()).model_dump_json())  # type: ignore[no-any-return]


def _with(**changes: Any) -> bytes:
    body = _job_json()
    body.update(changes)
    return json.dumps(body).encode()


def _with_engine(engine: dict[str, Any]) -> bytes:
    body = _job_json()
    body["job"]["tasks"][0]["engine"] = engine
    return json.dumps(body).encode()


BAD = {
    "not-json": (b"{nope", "ProtocolError", "not valid JSON"),
    "schema-version": (_with(schema_version=99), "ProtocolError", "unsupported schema version 99"),
    "invalid-job": (_with(job={"tasks": []}), "ProtocolError", "exactly one task"),
    "unknown-type": (
        _with_engine({"type": "cobol", "params": {"command": "cobol"}}),
        "UnknownJobTypeError",
        "unknown job type 'cobol'; supported types: duckdb, python",
    ),
    "translator-error": (
        _with_engine({"type": "python", "params": {"command": "python", "arguments": []}}),
        "TranslationError",
        "python job has nothing to run",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_submission_gets_an_error_reply(
    kind: str, requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    body, error_type, text = BAD[kind]
    reply = await client.submit(body)
    assert reply.job_id is None
    assert reply.error is not None
    assert reply.error.type == error_type
    assert text in reply.error.message
    assert await queue_depth(connection, COMPUTE_QUEUE) == 0


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_submission_without_reply_to_is_dead_lettered(
    kind: str, requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    body, _, _ = BAD[kind]
    async with collect(connection, DEAD_QUEUE) as dead:
        await client.send(body, reply=False)
        [message] = await dead.count(1)
    assert message.body == body
    assert await queue_depth(connection, COMPUTE_QUEUE) == 0
