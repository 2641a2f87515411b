"""``submission-batch`` messages on a real broker: several jobs in one message, each handled
as if sent alone, answered in one reply; refused whole only when the body is no batch."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.client.session import batch_body, open_session
from shoal.client.settings import ClientSettings, Secret
from shoal.model import JobState, derived_job_id
from shoal.requester import submissions
from shoal.requester.service import Requester
from shoal.topology import COMPUTE_QUEUE, SUBMIT_QUEUE
from shoal.wire import (
    MAX_BATCH_JOBS,
    SUBMISSION_BATCH,
    Submission,
    SubmitBatchReply,
    SubmitReply,
    decode,
    encode,
)

from .amqp import Client, collect, collect_dead
from .jobs import python_job
from .test_deadletters import dead_letter
from .test_submit import queue_depth, submission_counts

pytestmark = pytest.mark.rabbitmq

UNKNOWN_TYPE = json.dumps(
    {"job": {"name": "x", "tasks": [{"engine": {"type": "nosuch", "params": {}}}]}}
).encode()
WRONG_SHAPE = b'{"job": 5}'


async def send_batch(client: Client, parts: list[bytes], *, reply: bool = True) -> Any:
    return await client.send(batch_body(parts), reply=reply, message_type=SUBMISSION_BATCH)


async def answer(client: Client, body: bytes) -> SubmitBatchReply:
    future = await client.send(body, message_type=SUBMISSION_BATCH)
    assert future is not None
    return decode(await asyncio.wait_for(future, 10), SubmitBatchReply)


async def test_a_batch_is_answered_job_by_job(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    good = [Submission(job=python_job("python", "-c", f"print({n})")) for n in range(3)]
    keyed = Submission(job=python_job(), idempotency_key="batch-key")
    parts = [
        encode(good[0]),
        UNKNOWN_TYPE,
        encode(good[1]),
        WRONG_SHAPE,
        encode(keyed),
        encode(keyed),
        encode(good[2]),
    ]
    before = submission_counts()
    async with collect(connection, COMPUTE_QUEUE) as computed:
        reply = await answer(client, batch_body(parts))
        await computed.count(4)
    counted = [n - b for n, b in zip(submission_counts(), before, strict=True)]
    assert counted == [7, 5, 2]  # received, accepted, refused: each job of the batch
    assert reply.error is None
    errors = [r.error.type if r.error else None for r in reply.replies]
    assert errors == [None, "UnknownJobTypeError", None, "ProtocolError", None, None, None]
    ids = [r.job_id for r in reply.replies]
    assert [ids[0], ids[2], ids[6]] == [derived_job_id(s.job.id) for s in good]
    assert ids[4] == ids[5] is not None
    assert "job" in str(reply.replies[3].error and reply.replies[3].error.message)
    assert requester.store is not None
    for job_id in {ids[0], ids[2], ids[4], ids[6]}:
        assert (await requester.store.describe(str(job_id)))["state"] == JobState.QUEUED
    assert len(computed.messages) == 4
    assert await queue_depth(connection, SUBMIT_QUEUE) == 0


async def test_a_batch_sent_again_names_the_same_jobs(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    parts = [encode(Submission(job=python_job())) for _ in range(5)]
    async with collect(connection, COMPUTE_QUEUE) as computed:
        first = await answer(client, batch_body(parts))
        again = await answer(client, batch_body(parts))
        await computed.count(5)
        await asyncio.sleep(0.3)
    assert [r.job_id for r in again.replies] == [r.job_id for r in first.replies]
    assert len(computed.messages) == 5


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"not json", "not valid JSON"),
        (b'{"submissions": []}', "submissions"),
        (batch_body([encode(Submission(job=python_job()))] * (MAX_BATCH_JOBS + 1)), "at most"),
        (b'{"schema_version": 9, "submissions": [{}]}', "unsupported schema version 9"),
    ],
    ids=["not-json", "empty", "too-many", "version"],
)
async def test_a_body_that_is_no_batch_is_refused_whole(
    requester: Requester, client: Client, body: bytes, text: str
) -> None:
    reply = await answer(client, body)
    assert reply.replies == []
    assert reply.error is not None
    assert reply.error.type == "ProtocolError"
    assert text in reply.error.message


async def test_a_batch_without_reply_to(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    """Its good jobs go on and it is acked (the refused ones are logged); a body that is no
    batch is dead-lettered."""
    async with collect(connection, COMPUTE_QUEUE) as computed, collect_dead(connection) as dead:
        await send_batch(client, [encode(Submission(job=python_job())), UNKNOWN_TYPE], reply=False)
        await computed.count(1)
        await client.send(b"not json", reply=False, message_type=SUBMISSION_BATCH)
        [message] = await dead.count(1)
    assert message.body == b"not json"
    assert await queue_depth(connection, SUBMIT_QUEUE) == 0


async def test_a_dead_batch_is_answered_job_by_job(requester: Requester, client: Client) -> None:
    queued = Submission(job=python_job())
    accepted = await client.submit(queued)
    lost = Submission(job=python_job())
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    client._waiting["dead-batch"] = future
    await dead_letter(
        client.channel,
        SUBMIT_QUEUE,
        batch_body([encode(queued), encode(lost), WRONG_SHAPE]),
        "expired",
        reply_to="amq.rabbitmq.reply-to",
        correlation_id="dead-batch",
        type=SUBMISSION_BATCH,
    )
    reply = decode(await asyncio.wait_for(future, 10), SubmitBatchReply)
    first, second, third = reply.replies
    assert (first.error, first.job_id) == (None, accepted.job_id)
    assert [r.error.type if r.error else None for r in (second, third)] == [
        "UnavailableError",
        "ProtocolError",
    ]


async def test_the_client_falls_back_to_one_job_a_message(
    requester: Requester, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requester that does not know batches reads one as a submission and refuses it with
    a ``ProtocolError``: the session then sends those jobs, and the next ones, one a
    message."""
    monkeypatch.setattr(submissions, "SUBMISSION_BATCH", "no-such-type")
    jobs = [Submission(job=python_job()) for _ in range(10)]
    async with open_session(ClientSettings(broker_url=Secret(amqp_url))) as session:
        results = await session.submit_many(jobs)
        assert not session.batches
        more = await session.submit_many([Submission(job=python_job()) for _ in range(3)])
    assert all(isinstance(r, SubmitReply) for r in [*results, *more]), results
    assert [r.original_id for r in results if isinstance(r, SubmitReply)] == [
        s.job.id for s in jobs
    ]


async def test_a_batch_holding_nan_is_refused_whole(requester: Requester, client: Client) -> None:
    """Even when a submission of it is bad too (each is then read alone)."""
    job = encode(Submission(job=python_job())).replace(b'"params":{', b'"params":{"x":NaN,', 1)
    reply = await answer(client, batch_body([job, WRONG_SHAPE]))
    assert reply.error is not None
    assert "NaN" in reply.error.message
