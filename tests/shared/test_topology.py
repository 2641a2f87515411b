"""``shoal.topology`` on the real broker: the bounded dead queue, and an older unbounded one."""

from __future__ import annotations

import asyncio
import shlex

import aio_pika
import pytest
from structlog.testing import capture_logs

from shoal.broker import connect
from shoal.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_MAX_LENGTH,
    DEAD_POLICY,
    DEAD_QUEUE,
    declare,
)
from tests.services import rabbitmqctl, vhost_of

pytestmark = pytest.mark.rabbitmq


async def _depth(channel: aio_pika.abc.AbstractChannel, want: int, deadline: float = 30) -> int:
    """The dead queue's depth once it equals ``want`` (or the last seen at the deadline)."""
    depth = -1
    async with asyncio.timeout(deadline):
        while depth != want:
            declared = await (await channel.get_queue(DEAD_QUEUE)).declare()
            depth = int(declared.message_count or 0)
            if depth != want:
                await asyncio.sleep(0.2)
    return depth


async def test_the_dead_queue_keeps_only_the_newest_messages(private_broker_url: str) -> None:
    connection = await connect(private_broker_url)
    try:
        channel = await connection.channel()
        await declare(channel)
        await (await channel.get_queue(DEAD_QUEUE)).purge()
        fast = await connection.channel(publisher_confirms=False)
        dlx = await fast.get_exchange(DEAD_LETTER_EXCHANGE)
        for n in range(DEAD_MAX_LENGTH + 5):
            await dlx.publish(aio_pika.Message(str(n).encode()), routing_key="")
        assert await _depth(channel, DEAD_MAX_LENGTH) == DEAD_MAX_LENGTH
        oldest = await (await channel.get_queue(DEAD_QUEUE)).get(timeout=5)
        assert oldest is not None
        assert oldest.body == b"5"  # the first five were dropped
        await (await channel.get_queue(DEAD_QUEUE)).purge()
    finally:
        await connection.close()


async def test_an_older_unbounded_dead_queue_is_used_and_bound_by_the_policy(
    private_broker_url: str,
) -> None:
    vhost = vhost_of(private_broker_url)
    connection = await connect(private_broker_url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(DEAD_QUEUE)
        await channel.declare_queue(DEAD_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        with capture_logs() as logs:
            topology = await declare(channel)
        assert [e["command"] for e in logs if e["event"] == "topology.dead_queue_unbounded"] == [
            DEAD_POLICY
        ]
        assert topology.queues[DEAD_QUEUE].name == DEAD_QUEUE
        command = shlex.split(DEAD_POLICY)
        rabbitmqctl(*command[1:2], "-p", vhost, *command[2:])
        try:
            policies = rabbitmqctl("list_policies", "-p", vhost)
            assert f'"max-length":{DEAD_MAX_LENGTH}' in policies.replace(" ", "")
            rows = rabbitmqctl("list_queues", "-p", vhost, "name", "policy")
            assert f"{DEAD_QUEUE}\tshoal-dead" in rows.splitlines()
        finally:
            rabbitmqctl("clear_policy", "-p", vhost, "shoal-dead")
            await channel.queue_delete(DEAD_QUEUE)
            await declare(channel)  # bounded again, for the other tests of the session
    finally:
        await connection.close()
