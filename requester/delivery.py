"""Settling deliveries, and the in-flight set a consumer drains on shutdown.

Every delivery ends in exactly one of: ack (done), reject without requeue (poison: dead-letter
via ``shoal.dlx``), or nack with requeue after a jittered back-off (transient failure; the
queue's ``x-delivery-limit`` bounds the retries, then it is dead-lettered too).

After a connection drop ``connect_robust`` reopens channels and consumers, but a message
delivered on the old channel can no longer be settled: its delivery tag died with the
channel and the broker redelivers it. Settling one is therefore allowed to fail; we log it and
rely on the handlers being idempotent.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import DeliveredMessage

log = structlog.get_logger(__name__)

SETTLE_ERRORS = (
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.MessageProcessError,
    ConnectionError,
)
"""What settling a delivery on a dead channel raises."""


Delivery = AbstractIncomingMessage | DeliveredMessage
"""A delivery from an aio-pika consumer or straight from an aiormq channel."""


async def ack(message: Delivery) -> None:
    """Acknowledge; a dead channel means the broker will redeliver (and we are idempotent)."""
    await _settle(message, "ack")


async def dead_letter(message: Delivery) -> None:
    """Reject without requeue: the queue dead-letters it to ``shoal.dlx``."""
    await _settle(message, "reject")


async def retry_later(message: Delivery, base: float, cap: float) -> None:
    """Nack with requeue after an exponential, jittered back-off by delivery count."""
    await asyncio.sleep(_backoff(message, base, cap))
    await _settle(message, "requeue")


def _backoff(message: Delivery, base: float, cap: float) -> float:
    """Seconds to wait before requeueing ``message``: doubles with each delivery, jittered."""
    if isinstance(message, DeliveredMessage):
        headers = message.header.properties.headers or {}
    else:
        headers = message.headers or {}
    count = headers.get("x-delivery-count")
    count = count if isinstance(count, int) else 0
    return float(min(cap, base * 2**count) * random.uniform(0.5, 1.0))


async def _settle(message: Delivery, how: str) -> None:
    # Straight on the delivery's aiormq channel, without waiting for the socket drain: a
    # settlement has no answer to wait for, and the drain wait costs every delivery a
    # round through the connection's writer task.
    channel = cast(aiormq.Channel, message.channel)
    tag = message.delivery_tag
    try:
        if tag is None:
            raise aiormq.exceptions.ChannelInvalidStateError("delivery without a tag")
        if how == "ack":
            await channel.basic_ack(delivery_tag=tag, wait=False)
        elif how == "reject":
            await channel.basic_reject(delivery_tag=tag, requeue=False, wait=False)
        else:
            await channel.basic_nack(delivery_tag=tag, requeue=True, wait=False)
    except SETTLE_ERRORS as error:
        log.warning(
            "delivery.unsettled",
            how=how,
            error=f"{type(error).__name__}: {error}",
            note="channel gone; the broker redelivers it",
        )


class InFlight:
    """Tasks handling deliveries right now, so shutdown can wait for them with a deadline."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def wrap(
        self, handler: Callable[[AbstractIncomingMessage], Awaitable[None]]
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """A consumer callback that registers the task running ``handler``."""

        async def callback(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await handler(message)
            finally:
                if task is not None:
                    self._tasks.discard(task)

        return callback

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for in-flight handlers, then cancel the rest (their
        deliveries go back to the queue when the channel closes). Returns how many were cut.
        """
        pending = {t for t in self._tasks if not t.done()}
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)
        return len(still)
