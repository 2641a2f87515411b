"""``shoal.broker``: what every Shoal publish guarantees, on the real broker."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import urlsplit

import aio_pika
import aiormq
import pytest
from structlog.testing import capture_logs

from shoal import limits
from shoal.broker import connect, publish
from shoal.errors import UnavailableError
from shoal.wire import ControlMessage, decode
from tests.faults.proxy import ChaosProxy
from tests.refusing import refusing_queue, room_later

pytestmark = pytest.mark.rabbitmq


async def test_unroutable_message_raises_instead_of_vanishing(private_broker_url: str) -> None:
    connection = await connect(private_broker_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("unbound", aio_pika.ExchangeType.FANOUT)
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await publish(exchange, "", ControlMessage(job_id="j-1"))
        await publish(exchange, "", ControlMessage(job_id="j-1"), mandatory=False)
    finally:
        await connection.close()


async def test_messages_are_persistent_json_with_a_schema_version(private_broker_url: str) -> None:
    connection = await connect(private_broker_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await publish(channel.default_exchange, queue.name, ControlMessage(job_id="j-2"))
        message = await queue.get(timeout=10)
        assert message is not None
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
        assert decode(message.body, ControlMessage).job_id == "j-2"
        await message.ack()
    finally:
        await connection.close()


async def test_unreachable_broker_is_one_clear_error() -> None:
    with pytest.raises(
        UnavailableError, match=r"cannot reach RabbitMQ at amqp://guest:\*\*\*@127\.0\.0\.1:1/"
    ):
        await connect("amqp://guest:secret@127.0.0.1:1/", connect_timeout=5)


async def test_the_broker_refuses_a_message_over_the_limit(private_broker_url: str) -> None:
    """The set-up (``scripts/ensure-rabbitmq.sh``) sets ``max_message_size``."""
    connection = await connect(private_broker_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        fits = aio_pika.Message(b"x" * limits.MAX_MESSAGE_BYTES)
        await channel.default_exchange.publish(fits, routing_key=queue.name)
        too_big = aio_pika.Message(b"x" * (limits.MAX_MESSAGE_BYTES + 1))
        with pytest.raises(aiormq.exceptions.ChannelClosed, match="larger than configured max"):
            await channel.default_exchange.publish(too_big, routing_key=queue.name)
    finally:
        await connection.close()


def _via(url: str, port: int) -> str:
    """``url`` with its port replaced (the same vhost and login through another address)."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.netloc.rsplit(':', 1)[0]}:{port}").geturl()


async def test_several_addresses_connect_to_the_first_that_answers(
    private_broker_url: str,
) -> None:
    connection = await connect(f"{_via(private_broker_url, 1)},{private_broker_url}")
    try:
        assert connection.url.port == urlsplit(private_broker_url).port
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)
    finally:
        await connection.close()


async def test_none_of_several_addresses_answers_names_each() -> None:
    with pytest.raises(UnavailableError) as raised:
        await connect("amqp://guest:secret@127.0.0.1:1/,amqp://guest:secret@127.0.0.1:2/")
    message = raised.value.message
    assert "amqp://guest:***@127.0.0.1:1/: " in message
    assert "amqp://guest:***@127.0.0.1:2/: " in message
    assert "secret" not in message


async def test_after_a_drop_the_connection_moves_to_the_next_address(
    private_broker_url: str,
) -> None:
    upstream = urlsplit(private_broker_url)
    first, second = (
        ChaosProxy(upstream.hostname or "127.0.0.1", upstream.port or 5672, random.Random(n))
        for n in range(2)
    )
    await first.start()
    await second.start()
    urls = f"{_via(private_broker_url, first.port)},{_via(private_broker_url, second.port)}"
    connection = await connect(urls, reconnect_interval=0.1)
    back = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: back.set())
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        assert connection.url.port == first.port
        with capture_logs() as logs:
            await first.close()
            async with asyncio.timeout(30):
                await back.wait()
        assert connection.url.port == second.port
        assert [e["broker"] for e in logs if e["event"] == "broker.reconnected"] == [
            f"amqp://{upstream.username}:***@127.0.0.1:{second.port}{upstream.path}"
        ]
        await publish(channel.default_exchange, queue.name, ControlMessage(job_id="j-3"))
        message = await queue.get(timeout=10)
        assert message is not None
        await message.ack()
    finally:
        await connection.close()
        await second.close()


async def test_a_nacked_publish_is_tried_again_while_it_may_survive(
    private_broker_url: str,
) -> None:
    connection = await connect(private_broker_url)
    try:
        channel = await connection.channel()
        queue = await refusing_queue(channel)
        exchange = channel.default_exchange
        await publish(exchange, queue.name, ControlMessage(job_id="j-1"))
        with pytest.raises(aio_pika.exceptions.DeliveryError):  # full: nacked, not tried again
            await publish(exchange, queue.name, ControlMessage(job_id="j-2"))
        room = room_later(queue)
        await publish(exchange, queue.name, ControlMessage(job_id="j-3"), survive=10)
        await room
        message = await queue.get()
        assert decode(message.body, ControlMessage).job_id == "j-3"
    finally:
        await connection.close()
