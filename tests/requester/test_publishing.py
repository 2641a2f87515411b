"""The requester's hot-path publisher keeps Shoal's guarantees on a real broker."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection

from requester.publishing import NotConfirmedError, Publisher, properties
from shoal.topology import COMPUTE_QUEUE

from .amqp import collect

pytestmark = pytest.mark.rabbitmq


async def test_confirmed_publish_is_persistent(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    publisher = Publisher(channel, confirmed=True)
    async with collect(connection, COMPUTE_QUEUE) as computed:
        await publisher.publish(COMPUTE_QUEUE, b"{}", properties(message_id="m-1"), mandatory=True)
        [message] = await computed.count(1)
    await channel.close()
    assert message.body == b"{}"
    assert message.message_id == "m-1"
    assert message.delivery_mode == 2
    assert message.content_type == "application/json"


async def test_unroutable_publish_raises(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    publisher = Publisher(channel, confirmed=True)
    with pytest.raises(NotConfirmedError, match="no queue"):
        await publisher.publish("shoal.no-such-queue", b"{}", properties(), mandatory=True)
    await channel.close()
