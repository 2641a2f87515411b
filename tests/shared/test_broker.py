"""``shoal.broker``: what every Shoal publish guarantees, on the real broker."""

from __future__ import annotations

import aio_pika
import aiormq
import pytest

from shoal import limits
from shoal.broker import connect, publish
from shoal.errors import UnavailableError
from shoal.wire import ControlMessage, decode

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
        UnavailableError, match=r"cannot reach RabbitMQ at amqp://\*\*\*@127\.0\.0\.1:1/"
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
