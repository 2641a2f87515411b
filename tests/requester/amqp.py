"""Test helpers on a real broker: a raw submitter with direct reply-to, queue collectors."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from shoal.broker import connect
from shoal.topology import DEAD_LETTER_EXCHANGE, SUBMIT_QUEUE
from shoal.wire import Message, SubmitReply, decode, encode

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class Client:
    """Publishes raw bodies with a reply_to and waits for the answer."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self._waiting: dict[str, asyncio.Future[bytes]] = {}

    @classmethod
    async def open(cls, connection: AbstractRobustConnection) -> Client:
        channel = await connection.channel()
        client = cls(channel)
        raw = await channel.get_underlay_channel()
        await raw.basic_consume(DIRECT_REPLY_TO, client._on_reply, no_ack=True)
        return client

    async def _on_reply(self, message: Any) -> None:
        future = self._waiting.get(message.header.properties.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(message.body)

    async def send(
        self,
        body: bytes | Message,
        *,
        queue: str = SUBMIT_QUEUE,
        reply: bool = True,
        user_id: str | None = "guest",
        message_type: str | None = None,
    ) -> asyncio.Future[bytes] | None:
        """Publish (confirmed) as ``user_id`` (the connection's user, or none) with AMQP
        ``type`` ``message_type``; a future of the reply body when ``reply``."""
        data = encode(body) if isinstance(body, Message) else body
        properties: dict[str, Any] = {
            "delivery_mode": aio_pika.DeliveryMode.PERSISTENT,
            "user_id": user_id,
            "type": message_type,
        }
        future: asyncio.Future[bytes] | None = None
        if reply:
            correlation = uuid.uuid4().hex
            future = asyncio.get_running_loop().create_future()
            self._waiting[correlation] = future
            properties |= {"reply_to": DIRECT_REPLY_TO, "correlation_id": correlation}
        await self.channel.default_exchange.publish(
            aio_pika.Message(data, **properties), routing_key=queue, mandatory=True
        )
        return future

    async def submit(self, body: bytes | Message, deadline: float = 10.0) -> SubmitReply:
        """Publish a submission and decode the reply."""
        future = await self.send(body)
        assert future is not None
        return decode(await asyncio.wait_for(future, deadline), SubmitReply)


class Collector:
    """Consumes a queue (acking), keeping each message; wait for a count with a deadline."""

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []
        self._changed = asyncio.Condition()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        async with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    async def wait_for(
        self, check: Callable[[list[AbstractIncomingMessage]], bool], deadline: float = 15.0
    ) -> list[AbstractIncomingMessage]:
        async with asyncio.timeout(deadline), self._changed:
            await self._changed.wait_for(lambda: check(self.messages))
        return self.messages

    async def count(self, n: int, deadline: float = 15.0) -> list[AbstractIncomingMessage]:
        return await self.wait_for(lambda m: len(m) >= n, deadline)


@contextlib.asynccontextmanager
async def collect(connection: AbstractRobustConnection, queue: str) -> AsyncIterator[Collector]:
    """Consume ``queue`` into a :class:`Collector` while inside."""
    channel = await connection.channel()
    async with _collect(channel, await channel.get_queue(queue)) as collector:
        yield collector


@contextlib.asynccontextmanager
async def bound(
    connection: AbstractRobustConnection, exchange: str, key: str = ""
) -> AsyncIterator[Collector]:
    """What ``exchange`` routes with ``key`` while inside, through a private queue."""
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=key)
    async with _collect(channel, queue) as collector:
        yield collector


def collect_dead(connection: AbstractRobustConnection) -> AbstractAsyncContextManager[Collector]:
    """Every message dead-lettered while inside (bound to ``shoal.dlx``: a running requester
    consumes ``shoal.dead`` itself)."""
    return bound(connection, DEAD_LETTER_EXCHANGE)


@contextlib.asynccontextmanager
async def _collect(channel: AbstractChannel, declared: AbstractQueue) -> AsyncIterator[Collector]:
    collector = Collector()
    tag = await declared.consume(collector.on_message)
    try:
        yield collector
    finally:
        with contextlib.suppress(Exception):
            await declared.cancel(tag)
        with contextlib.suppress(Exception):
            await channel.close()


async def broker(url: str, name: str = "test") -> AbstractRobustConnection:
    """A robust connection for a test."""
    return await connect(url, name=name)
