"""Frames written together keep Shoal's publish guarantees on a real broker."""

from __future__ import annotations

import asyncio
from typing import cast

import aiormq
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiormq.abc import DeliveredMessage

from shoal.requester.framebatch import (
    FrameBatch,
    NotConfirmedError,
    RefusedError,
    confirmed,
    properties,
)
from shoal.topology import COMPUTE_QUEUE, SUBMIT_QUEUE
from tests.refusing import refusing_queue

from .amqp import collect

pytestmark = pytest.mark.rabbitmq


async def raw_channel(
    connection: AbstractRobustConnection, *, confirms: bool = True
) -> aiormq.Channel:
    channel = await connection.channel(publisher_confirms=confirms)
    return cast(aiormq.Channel, await channel.get_underlay_channel())


async def test_one_flush_publishes_every_message_persistent_and_in_order(
    connection: AbstractRobustConnection,
) -> None:
    raw = await raw_channel(connection)
    batch = FrameBatch(raw)
    futures = [
        batch.publish(
            COMPUTE_QUEUE, f"{n}".encode(), properties(message_id=f"m-{n}"), mandatory=True
        )
        for n in range(50)
    ]
    async with collect(connection, COMPUTE_QUEUE) as computed:
        await batch.flush()
        assert await confirmed(futures) == [None] * 50
        messages = await computed.count(50)
    assert [m.body for m in messages] == [f"{n}".encode() for n in range(50)]
    assert [m.message_id for m in messages] == [f"m-{n}" for n in range(50)]
    assert {m.delivery_mode for m in messages} == {2}
    assert {m.content_type for m in messages} == {"application/json"}
    assert len(batch) == 0


async def test_unroutable_message_is_not_confirmed_but_its_neighbours_are(
    connection: AbstractRobustConnection,
) -> None:
    raw = await raw_channel(connection)
    batch = FrameBatch(raw)
    futures = [
        batch.publish(COMPUTE_QUEUE, b"a", properties(message_id="a"), mandatory=True),
        batch.publish("shoal.no-such-queue", b"b", properties(message_id="b"), mandatory=True),
        batch.publish(COMPUTE_QUEUE, b"c", properties(message_id="c"), mandatory=True),
    ]
    await batch.flush()
    first, lost, last = await confirmed(futures)
    assert first is None
    assert last is None
    assert isinstance(lost, NotConfirmedError)
    assert "no queue" in str(lost)


async def test_a_refused_message_is_told_apart_from_an_unroutable_one(
    connection: AbstractRobustConnection,
) -> None:
    queue = await refusing_queue(await connection.channel())
    raw = await raw_channel(connection)
    batch = FrameBatch(raw)
    futures = [
        batch.publish(queue.name, b"a", properties(message_id="a"), mandatory=True),
        batch.publish(queue.name, b"b", properties(message_id="b"), mandatory=True),
        batch.publish("shoal.no-such-queue", b"c", properties(message_id="c"), mandatory=True),
    ]
    await batch.flush()
    taken, refused, lost = await confirmed(futures)
    assert taken is None
    assert isinstance(refused, RefusedError)  # Basic.Nack: the requester renews its channel
    assert isinstance(lost, NotConfirmedError)
    assert not isinstance(lost, RefusedError)


async def test_a_body_larger_than_a_frame_arrives_whole(
    connection: AbstractRobustConnection,
) -> None:
    raw = await raw_channel(connection)
    body = bytes(range(256)) * (3 * raw.max_content_size // 256 + 7)
    batch = FrameBatch(raw)
    futures = [batch.publish(COMPUTE_QUEUE, body, properties(message_id="big"), mandatory=True)]
    async with collect(connection, COMPUTE_QUEUE) as computed:
        await batch.flush()
        assert await confirmed(futures) == [None]
        [message] = await computed.count(1)
    assert message.body == body


async def test_acks_in_one_flush_settle_every_delivery(
    connection: AbstractRobustConnection,
) -> None:
    sender = FrameBatch(await raw_channel(connection))
    futures = [sender.publish(SUBMIT_QUEUE, b"x", properties(), mandatory=True) for _ in range(20)]
    await sender.flush()
    assert await confirmed(futures) == [None] * 20
    consumer = await raw_channel(connection)
    received: list[DeliveredMessage] = []
    all_in = asyncio.Event()

    async def on_message(message: DeliveredMessage) -> None:
        received.append(message)
        if len(received) == 20:
            all_in.set()

    ok = await consumer.basic_consume(SUBMIT_QUEUE, on_message)
    await asyncio.wait_for(all_in.wait(), 10)
    acks = FrameBatch(consumer)
    for message in received:
        assert message.delivery_tag is not None
        acks.ack(message.delivery_tag)
    await acks.flush()
    assert ok.consumer_tag is not None
    await consumer.basic_cancel(ok.consumer_tag)
    await consumer.close()  # anything not acked would now go back to the queue
    check = await raw_channel(connection)
    declared = await check.queue_declare(SUBMIT_QUEUE, passive=True)
    assert declared.message_count == 0


async def test_without_confirms_publish_has_no_future(
    connection: AbstractRobustConnection,
) -> None:
    raw = await raw_channel(connection, confirms=False)
    batch = FrameBatch(raw)
    assert batch.publish(COMPUTE_QUEUE, b"{}", properties(), mandatory=False) is None
    async with collect(connection, COMPUTE_QUEUE) as computed:
        await batch.flush()
        [message] = await computed.count(1)
    assert message.body == b"{}"


async def test_flush_on_a_closed_channel_raises(connection: AbstractRobustConnection) -> None:
    raw = await raw_channel(connection)
    batch = FrameBatch(raw)
    batch.publish(COMPUTE_QUEUE, b"{}", properties(), mandatory=True)
    await raw.close()
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await batch.flush()
