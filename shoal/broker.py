"""Connecting to RabbitMQ and publishing the way Shoal always publishes.

Every publish is persistent, ``mandatory`` and waits for the broker's confirm; a message the
broker cannot route raises ``aio_pika.exceptions.DeliveryError`` instead of vanishing.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from shoal.brokerurl import unreachable
from shoal.wire import CONTENT_TYPE, Message, encode

CHANNEL_GONE = (aiormq.exceptions.ChannelInvalidStateError, ConnectionError)
"""What a publish raises while the connection is down (before a robust channel reopens)."""
RESEND_PAUSE_MAX = 2.0


async def connect(
    url: str,
    *,
    connect_timeout: float = 5.0,
    name: str = "shoal",
    reconnect_interval: float = 5.0,
) -> AbstractRobustConnection:
    """A robust connection, or ``UnavailableError`` naming the broker (password hidden).

    After a drop it reconnects every ``reconnect_interval`` seconds, reopening its channels
    and consumers; each attempt gets ``connect_timeout`` seconds too, so an attempt that hangs
    (a stalled connection, a broker that never answers) cannot end the reconnecting.
    """
    try:
        return await asyncio.wait_for(
            aio_pika.connect_robust(
                url,
                client_properties={"connection_name": name},
                reconnect_interval=reconnect_interval,
                timeout=connect_timeout,
            ),
            timeout=connect_timeout,
        )
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
        raise unreachable(url, error) from None


def broker_user(url: str) -> str:
    """The account an ``amqp://`` URL logs in as (RabbitMQ's default: ``guest``)."""
    return unquote(urlsplit(url).username or "guest")


def make_message(message: Message, **properties: Any) -> aio_pika.Message:
    """A persistent JSON AMQP message carrying ``message``."""
    return aio_pika.Message(
        encode(message),
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,
    )


async def publish(
    exchange: AbstractExchange,
    routing_key: str,
    message: Message,
    *,
    mandatory: bool = True,
    survive: float = 0.0,
    **properties: Any,
) -> None:
    """Publish ``message`` persistently (mandatory unless told); returns once confirmed.

    Only notifications that may have no listener (``recorded``) pass ``mandatory=False``.
    With ``survive`` seconds, a publish that fails because the connection dropped is tried
    again (with backoff) until the robust connection is back or that time has passed; only
    for messages that are safe to publish twice (the broker may have taken the first).
    """
    loop = asyncio.get_running_loop()
    give_up, pause = loop.time() + survive, 0.1
    while True:
        try:
            result = await exchange.publish(
                make_message(message, **properties), routing_key=routing_key, mandatory=mandatory
            )
            break
        except CHANNEL_GONE:
            if loop.time() + pause > give_up:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, RESEND_PAUSE_MAX)
    if isinstance(result, aiormq.abc.DeliveredMessage):  # Basic.Return: no queue took it
        raise aiormq.exceptions.PublishError(result, result.delivery)
