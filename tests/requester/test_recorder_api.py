"""The state recorder and the ``shoal.api`` RPC, on a real broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.broker import publish
from shoal.limits import MAX_API_REQUEST_BYTES
from shoal.model import JobState
from shoal.requester.service import Requester
from shoal.topology import API_QUEUE, CONTROL_EXCHANGE, EVENTS_EXCHANGE
from shoal.wire import ApiOp, ApiReply, ApiRequest, ControlMessage, JobEvent, Submission, decode

from .amqp import Client, collect, collect_dead
from .jobs import log, python_job, result, state, tar_gz

pytestmark = pytest.mark.rabbitmq


class Events:
    """Publishes job events and waits until the recorder committed them."""

    def __init__(self, requester: Requester, connection: AbstractRobustConnection) -> None:
        self._connection = connection
        self._recorded: list[JobEvent] = []
        self._changed = asyncio.Condition()
        assert requester.recorder is not None
        requester.recorder.observers.append(self._observe)

    def _observe(self, event: JobEvent) -> None:
        self._recorded.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def send(self, *events: JobEvent) -> None:
        """Publish ``events`` in order and wait for all of them to be recorded."""
        channel = await self._connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        for event in events:
            await publish(exchange, event.routing_key, event, user_id="guest")
        await channel.close()
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(lambda: all(e in self._recorded for e in events))


@pytest.fixture
def events(requester: Requester, connection: AbstractRobustConnection) -> Events:
    return Events(requester, connection)


async def api(client: Client, op: ApiOp, job_id: str | None = None, **params: Any) -> ApiReply:
    future = await client.send(ApiRequest(op=op, job_id=job_id, params=params), queue=API_QUEUE)
    assert future is not None
    return decode(await asyncio.wait_for(future, 10), ApiReply)


async def submitted(client: Client, **labels: str) -> str:
    reply = await client.submit(Submission(job=python_job(labels=labels)))
    assert reply.job_id is not None
    return reply.job_id


async def test_late_running_after_completed_is_ignored(client: Client, events: Events) -> None:
    job_id = await submitted(client)
    await events.send(
        state(job_id, JobState.COMPLETED, exit_code=0), state(job_id, JobState.RUNNING)
    )
    record = (await api(client, "describe", job_id)).result
    assert record["state"] == "completed"
    assert record["exit_code"] == 0
    assert record["executions"][0]["state"] == "completed"


async def test_log_chunks_come_back_in_seq_order(client: Client, events: Events) -> None:
    job_id = await submitted(client)
    await events.send(log(job_id, 3, "three\n"), log(job_id, 1, "one\n"), log(job_id, 2, "two\n"))
    await events.send(log(job_id, 2, "two\n"))
    logs = (await api(client, "logs", job_id)).result
    assert "".join(c["data"] for c in logs["chunks"]) == "one\ntwo\nthree\n"


async def test_poison_event_is_dead_lettered(
    requester: Requester, connection: AbstractRobustConnection
) -> None:
    channel = await connection.channel()
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    async with collect_dead(connection) as dead:
        await exchange.publish(aio_pika.Message(b"garbage"), routing_key="job.guest.x.state")
        [message] = await dead.count(1)
    assert message.body == b"garbage"


async def test_list_describe_logs_get(client: Client, events: Events) -> None:
    red = await submitted(client, color="red")
    blue = await submitted(client, color="blue")
    archive = tar_gz({"answer.txt": b"42\n"})
    await events.send(
        state(blue, JobState.RUNNING),
        log(blue, 1, "hello\n"),
        log(blue, 2, "oops\n", stream="stderr"),
        result(blue, {"outputs": archive}),
        state(blue, JobState.FAILED, exit_code=3, error="exit status 3"),
    )
    listed = (await api(client, "list")).result
    assert {j["id"] for j in listed} == {red, blue}
    assert [j["id"] for j in (await api(client, "list", labels={"color": "red"})).result] == [red]
    assert [j["id"] for j in (await api(client, "list", state="failed")).result] == [blue]
    assert len((await api(client, "list", limit=1)).result) == 1
    bad = await api(client, "list", state="bogus")
    assert bad.error is not None
    assert bad.error.type == "UsageError"
    huge = await api(client, "list", labels={"color": "r" * MAX_API_REQUEST_BYTES})
    assert huge.error is not None
    assert huge.error.type == "TooLargeError"
    assert huge.error.message.startswith("the API request is 64.1 KiB; the limit is 64.0 KiB")

    record = (await api(client, "describe", blue)).result
    assert record["state"] == "failed"
    assert record["original"]["tasks"][0]["engine"]["type"] == "python"
    assert record["engine_spec"]["type"] == "docker"
    [run] = record["executions"]
    assert (run["exit_code"], run["error"], run["executor"]) == (3, "exit status 3", "ex-1")
    assert run["started_at"] is not None
    assert run["ended_at"] is not None
    assert record["logs"]["stderr"] == {"bytes": 5, "truncated": False}

    logs = (await api(client, "logs", blue)).result
    assert [(c["stream"], c["data"]) for c in logs["chunks"]] == [
        ("stdout", "hello\n"),
        ("stderr", "oops\n"),
    ]
    outputs = (await api(client, "get", blue)).result["outputs"]
    assert base64.b64decode(outputs["outputs"]["data"]) == archive


async def test_unknown_job_is_not_found(client: Client, requester: Requester) -> None:
    answer = await api(client, "describe", "j-00000000-0000-4000-8000-000000000000")
    assert answer.error is not None
    assert answer.error.type == "NotFoundError"


@contextlib.asynccontextmanager
async def executor_control(connection: AbstractRobustConnection) -> AsyncIterator[Any]:
    """A private queue on ``shoal.control``, as an executor has."""
    channel = await connection.channel()
    queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
    await queue.bind(CONTROL_EXCHANGE)
    async with collect(connection, queue.name) as messages:
        yield messages
    await channel.close()


async def test_stop_queued_and_running(
    client: Client, events: Events, connection: AbstractRobustConnection
) -> None:
    queued = await submitted(client)
    running = await submitted(client)
    done = await submitted(client)
    await events.send(
        state(running, JobState.RUNNING),
        state(done, JobState.RUNNING),
        state(done, JobState.COMPLETED, exit_code=0),
    )
    async with executor_control(connection) as control:
        stopped = (await api(client, "stop", queued)).result
        assert stopped == {"job_id": queued, "state": "stopped", "stopping": False}
        stopping = (await api(client, "stop", running)).result
        assert stopping == {"job_id": running, "state": "running", "stopping": True}
        ended = (await api(client, "stop", done)).result
        assert ended["state"] == "completed"
        messages = await control.count(2)
    assert [decode(m.body, ControlMessage).job_id for m in messages] == [queued, running]
    assert (await api(client, "describe", queued)).result["state"] == "stopped"
    # A late "running" from an executor that had not heard does not revive it.
    await events.send(state(queued, JobState.RUNNING))
    assert (await api(client, "describe", queued)).result["state"] == "stopped"
