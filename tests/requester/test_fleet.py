"""The cluster view across requesters: two requesters on one Postgres store answer
``status`` alike, and one that stops cleanly leaves the view at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.liveness import executor_queue
from shoal.names import HEARTBEATS_QUEUE
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.topology import API_QUEUE
from shoal.wire import ApiReply, ApiRequest, Heartbeat, decode

from .amqp import Client
from .services import postgres_database

pytestmark = pytest.mark.rabbitmq


async def status(client: Client) -> dict[str, Any]:
    future = await client.send(ApiRequest(op="status"), queue=API_QUEUE)
    assert future is not None
    reply = decode(await asyncio.wait_for(future, 10), ApiReply)
    assert reply.error is None, reply.error
    answer: dict[str, Any] = reply.result
    return answer


async def nodes_until(client: Client, wanted: set[str]) -> dict[str, Any]:
    """The first status whose node IDs are ``wanted`` (within 15 s)."""
    async with asyncio.timeout(15):
        while True:
            found = await status(client)
            if {n["node_id"] for n in found["nodes"]} == wanted:
                return found
            await asyncio.sleep(0.1)  # the next heartbeat is recorded meanwhile


@pytest.fixture
async def two_requesters(
    connection: AbstractRobustConnection, requester_settings: RequesterSettings
) -> AsyncIterator[list[Requester]]:
    async with postgres_database() as url:
        running = []
        for name in ("requester-a", "requester-b"):
            settings = requester_settings.model_copy(
                update={"database_url": url, "name": name, "heartbeat_every": 0.5}
            )
            requester = Requester(settings)
            await requester.start()
            running.append(requester)
        yield running
        for requester in running:
            await requester.stop()


async def test_requesters_on_one_store_share_the_view(
    two_requesters: list[Requester], client: Client, connection: AbstractRobustConnection
) -> None:
    a, b = two_requesters
    channel = await connection.channel()  # holds the executor's control queue: it is alive
    await channel.declare_queue(executor_queue("exec-1"), exclusive=True, auto_delete=True)
    executor = Heartbeat(node_id="exec-1", role="executor", slots=2, running=["j-x"], interval=5)
    await client.send(executor, queue=HEARTBEATS_QUEUE, reply=False)
    everyone = {a.node_id, b.node_id, "exec-1"}
    for _ in range(6):  # answered by either requester, the same view
        found = await nodes_until(client, everyone)
        [seen] = [n for n in found["nodes"] if n["node_id"] == "exec-1"]
        assert seen["running"] == ["j-x"]  # the test's account is the requester's: operator
    assert [n["role"] for n in found["nodes"]] == ["requester", "requester", "executor"]
    await b.stop()
    two_requesters.remove(b)
    await nodes_until(client, {a.node_id, "exec-1"})
