"""Connecting to RabbitMQ and publishing the way Shoal always publishes.

Every publish is persistent, ``mandatory`` and waits for the broker's confirm; a message the
broker cannot route raises ``aio_pika.exceptions.DeliveryError`` instead of vanishing.

A broker setting may list the nodes of a cluster (``shoal.brokerurl``): :func:`connect` takes
the first that answers, and :class:`FailoverConnection` moves to the next after every drop or
failed attempt. It relies on one protected hook of aio-pika's ``RobustConnection`` (checked for
aio-pika 9.4 to 10.x): ``_on_connection_close`` runs after a drop *and* after a failed connection
attempt, and each attempt connects to ``self.url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
)
from yarl import URL

from shoal.brokerurl import broker_urls, redact, unreachable_all
from shoal.wire import CONTENT_TYPE, Message, encode

log = structlog.get_logger("broker")

CHANNEL_GONE = (aiormq.exceptions.ChannelInvalidStateError, ConnectionError)
"""What a publish raises while the connection is down (before a robust channel reopens)."""
RESEND_PAUSE_MAX = 2.0


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several broker addresses, tried in turn (round robin).

    It starts on ``urls[start]``; after a drop or a failed reconnection attempt the next attempt
    goes to the next address. With one address it is aio-pika's ``RobustConnection``.
    """

    def __init__(self, urls: Sequence[str], start: int, **kwargs: Any) -> None:
        self._urls = [URL(url) for url in urls]
        self._index = start
        super().__init__(self._urls[start], **kwargs)
        self.reconnect_callbacks.add(self._reconnected)

    def _reconnected(self, *_: object) -> None:
        log.info("broker.reconnected", broker=redact(str(self.url)))

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        await super()._on_connection_close(closing)
        if len(self._urls) > 1 and not (self._close_called or self.is_closed):
            self._index = (self._index + 1) % len(self._urls)
            self.url = self._urls[self._index]


async def connect(
    url: str,
    *,
    connect_timeout: float = 5.0,
    name: str = "shoal",
    reconnect_interval: float = 5.0,
) -> FailoverConnection:
    """A robust connection to the first address of ``url`` that answers, or
    ``UnavailableError`` naming each broker (passwords hidden) and why it failed.

    After a drop it reconnects every ``reconnect_interval`` seconds, to the next address of the
    list each time, reopening its channels and consumers; each attempt gets ``connect_timeout``
    seconds too, so an attempt that hangs (a stalled connection, a broker that never answers)
    cannot end the reconnecting.
    """
    urls = broker_urls(url)
    failures: list[tuple[str, BaseException]] = []
    for start, address in enumerate(urls):
        connection = FailoverConnection(
            urls,
            start,
            client_properties={"connection_name": name},
            reconnect_interval=reconnect_interval,
        )
        try:
            await asyncio.wait_for(connection.connect(timeout=connect_timeout), connect_timeout)
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
            await connection.close()
            failures.append((address, error))
        else:
            return connection
    raise unreachable_all(failures) from None


def connected(connection: AbstractConnection) -> bool:
    """True while ``connection`` is up. A robust connection is not ``is_closed`` while it
    reconnects after a drop, so that alone does not tell."""
    return connection.connected.is_set() and not connection.is_closed


async def consumer_active(queue: AbstractQueue, tag: str) -> bool:
    """True while consumer ``tag`` of ``queue`` is registered on an open channel: false once
    it is cancelled (by us or the broker) or its channel or connection drops, true again once
    a robust channel has registered it anew after a reconnect."""
    if queue.channel.is_closed:
        return False
    underlay = cast(aiormq.Channel, await queue.channel.get_underlay_channel())
    return tag in underlay.consumers


def refused(error: BaseException) -> bool:
    """True when ``error`` is the broker's ``Basic.Nack`` of a publish (aiormq's
    ``DeliveryError``), not a message returned as unroutable (its ``PublishError``)."""
    return isinstance(error, aiormq.exceptions.DeliveryError) and not isinstance(
        error, aiormq.exceptions.PublishError
    )


async def reopened(channel: AbstractChannel, within: float = 10.0) -> None:
    """Once ``channel``, closed by the broker (or by :class:`Renewal`), is open again: a robust
    channel reopens itself (waited for, up to ``within`` seconds), a plain one is reopened
    here."""
    if not isinstance(channel, AbstractRobustChannel):
        await channel.reopen()
        return
    done = asyncio.Event()

    def on_reopen(*_: object) -> None:
        done.set()

    channel.reopen_callbacks.add(on_reopen)
    try:
        if channel.is_closed:
            await asyncio.wait_for(done.wait(), within)
    finally:
        channel.reopen_callbacks.discard(on_reopen)


class Renewal:
    """Renews a robust channel whose publishes the broker refuses to confirm: its channel on
    the broker is closed and a fresh one opened in its place (consumers and declarations
    restored by aio-pika; deliveries not yet settled go back to their queues).

    RabbitMQ 3.10 was seen refusing (``Basic.Nack``) every publish of a channel that had
    been reopened on one cluster node while the node leading the quorum queues was stopping,
    for minutes, while the queues were up and new channels were served. At most one renewal
    every ``every`` seconds, so a real refusal (a full queue, a lost quorum) costs little.
    """

    def __init__(self, channel: AbstractRobustChannel, every: float = 5.0) -> None:
        self._channel = channel
        self._every = every
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        """Renew the channel, unless it was renewed less than ``every`` seconds ago."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if loop.time() < self._next:
                return
            self._next = loop.time() + self._every
            try:
                raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
                log.warning("broker.channel_renewed", channel=raw.number)
                await raw.close()
                await reopened(self._channel)
            except Exception as error:  # down meanwhile: the robust connection reopens it
                log.warning("broker.renew_failed", error=f"{type(error).__name__}: {error}")


def broker_user(url: str) -> str:
    """The account an ``amqp://`` URL (or list of them) logs in as (RabbitMQ's default:
    ``guest``)."""
    return unquote(urlsplit(broker_urls(url)[0]).username or "guest")


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
    renew: Callable[[], Awaitable[None]] | None = None,
    **properties: Any,
) -> None:
    """Publish ``message`` persistently (mandatory unless told); returns once confirmed.

    Only notifications that may have no listener (``recorded``) pass ``mandatory=False``.
    With ``survive`` seconds, a publish that fails because the connection dropped, or that
    the broker refuses to confirm (``Basic.Nack``: a quorum queue electing a new leader after
    its node stopped), is tried again (with backoff) until it goes through or that time has
    passed; only for messages that are safe to publish twice (the broker may have taken the
    first). ``renew`` (a :class:`Renewal` of the exchange's channel), when given, is awaited
    after a refused confirm, before the next try (or before the error is raised: the next
    publish goes out on the fresh channel).
    """
    loop = asyncio.get_running_loop()
    give_up, pause = loop.time() + survive, 0.1
    while True:
        try:
            result = await exchange.publish(
                make_message(message, **properties), routing_key=routing_key, mandatory=mandatory
            )
            break
        except (*CHANNEL_GONE, aiormq.exceptions.DeliveryError) as error:
            if refused(error) and renew is not None:
                await renew()
            if isinstance(error, aiormq.exceptions.PublishError) or loop.time() + pause > give_up:
                raise  # a returned message (no queue for it) is not tried again
        await asyncio.sleep(pause)
        pause = min(pause * 2, RESEND_PAUSE_MAX)
    if isinstance(result, aiormq.abc.DeliveredMessage):  # Basic.Return: no queue took it
        raise aiormq.exceptions.PublishError(result, result.delivery)
