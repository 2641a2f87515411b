"""The wire protocol as ``docs/protocol.md`` writes it, spoken by a bare AMQP client.

Nothing of Shoal's own code is used to talk to the services: the messages are written as
plain JSON, sent with aiormq, and every message that comes back is checked against the
committed JSON Schemas in ``docs/schema``. If this test needs to know something that the
document does not say, the document is incomplete.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiormq
import jsonschema
import pytest
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schema"
JOB = {
    "name": "bare-client",
    "tasks": [
        {
            "engine": {
                "type": "python",
                "params": {
                    "version": "3.11",
                    "command": "python",
                    "arguments": ["python", "-c", "print(6 * 7)"],
                },
            }
        }
    ],
}


def valid(name: str, body: bytes) -> dict[str, Any]:
    """``body`` parsed, after checking it against ``docs/schema/<name>.schema.json``."""
    message: dict[str, Any] = json.loads(body)
    jsonschema.validate(message, json.loads((SCHEMAS / f"{name}.schema.json").read_text()))
    return message


class BareClient:
    """Requests over direct reply-to, as the protocol document describes them."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, user: str) -> None:
        self.channel = channel
        self.user = user
        self.waiting: dict[str, asyncio.Future[bytes]] = {}

    async def start(self) -> None:
        await self.channel.basic_consume("amq.rabbitmq.reply-to", self.on_reply, no_ack=True)

    async def on_reply(self, message: DeliveredMessage) -> None:
        future = self.waiting.pop(message.header.properties.correlation_id or "", None)
        if future is not None:
            future.set_result(message.body)

    async def call(
        self, queue: str, request: dict[str, Any], message_type: str | None = None
    ) -> bytes:
        correlation = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[correlation] = future
        confirm = await self.channel.basic_publish(
            json.dumps(request).encode(),
            exchange="shoal.requests",
            routing_key=queue,
            properties=Basic.Properties(
                content_type="application/json",
                delivery_mode=2,
                reply_to="amq.rabbitmq.reply-to",
                correlation_id=correlation,
                user_id=self.user,
                message_type=message_type,
            ),
            mandatory=True,
        )
        assert isinstance(confirm, Basic.Ack)
        async with asyncio.timeout(30):
            return await future


async def test_submit_follow_and_read_a_job_with_a_bare_amqp_client(system: System) -> None:
    url = system.env["SHOAL_BROKER_URL"]
    user = unquote(urlsplit(url).username or "guest")
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        client = BareClient(channel, user)
        await client.start()
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_event(message: DeliveredMessage) -> None:
            events.put_nowait(valid("job-event", message.body))

        inbox = await channel.queue_declare("", exclusive=True, auto_delete=True)
        queue = str(inbox.queue)
        await channel.queue_bind(queue, "shoal.events", routing_key=f"job.{user}.*.*")
        await channel.basic_consume(queue, on_event, no_ack=True)

        submission = {"schema_version": 2, "job": JOB, "idempotency_key": None}
        valid("submission", json.dumps(submission).encode())
        reply = valid("submit-reply", await client.call("shoal.submit", submission))
        assert reply["error"] is None, reply
        job_id = reply["job_id"]

        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(120):
            while not any(e["kind"] == "recorded" for e in seen):
                event = await events.get()
                if event["job_id"] == job_id:
                    seen.append(event)
        states = [e["state"] for e in seen if e["kind"] == "state"]
        assert states[-1] == "completed", seen

        def api(op: str) -> dict[str, Any]:
            return {"schema_version": 2, "op": op, "job_id": job_id, "params": {}}

        logs = valid("api-reply", await client.call("shoal.api", api("logs")))
        assert "".join(c["data"] for c in logs["result"]["chunks"]) == "42\n"
        described = valid("api-reply", await client.call("shoal.api", api("describe")))
        assert described["result"]["state"] == "completed"
        assert described["result"]["exit_code"] == 0

        unknown_type = {"name": "x", "tasks": [{"engine": {"type": "nosuch", "params": {}}}]}
        batch = {
            "schema_version": 2,
            "submissions": [
                {"schema_version": 2, "job": {**JOB, "id": f"j-{uuid.uuid4()}"}},
                {"schema_version": 2, "job": unknown_type},
            ],
        }
        valid("submission-batch", json.dumps(batch).encode())
        answered = await client.call("shoal.submit", batch, message_type="submission-batch")
        replies = valid("submit-batch-reply", answered)["replies"]
        assert replies[0]["error"] is None, replies
        assert replies[0]["job_id"].startswith("j-")
        assert replies[1]["error"]["type"] == "UnknownJobTypeError", replies

        wrong = valid("api-reply", await client.call("shoal.api", {**api("describe"), "x": 1}))
        assert wrong["error"]["type"] == "ProtocolError", wrong
        unknown = {**api("describe"), "job_id": f"j-{uuid.uuid4()}"}
        missing = valid("api-reply", await client.call("shoal.api", unknown))
        assert missing["error"]["type"] == "NotFoundError", missing
    finally:
        await connection.close()
