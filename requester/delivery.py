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

log = structlog.get_logger(__name__)

SETTLE_ERRORS = (
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.MessageProcessError,
    ConnectionError,
)
"""What settling a delivery on a dead channel raises."""


async def ack(message: AbstractIncomingMessage) -> None:
    """Acknowledge; a dead channel means the broker will redeliver (and we are idempotent)."""
    await _settle(message, "ack")


async def dead_letter(message: AbstractIncomingMessage) -> None:
    """Reject without requeue: the queue dead-letters it to ``shoal.dlx``."""
    await _settle(message, "reject")


async def retry_later(message: AbstractIncomingMessage, base: float, cap: float) -> None:
    """Nack with requeue after an exponential, jittered back-off by delivery count."""
    count = (message.headers or {}).get("x-delivery-count")
    count = count if isinstance(count, int) else 0
    delay = min(cap, base * 2**count) * random.uniform(0.5, 1.0)
    await asyncio.sleep(delay)
    await _settle(message, "requeue")


async def _settle(message: AbstractIncomingMessage, how: str) -> None:
    try:
        if how == "ack" and message.delivery_tag is not None:
            # Straight on the delivery's channel, without waiting for the socket drain: an
            # ack has no answer to wait for, and the drain wait costs every delivery a
            # round through the connection's writer task.
            channel = cast(aiormq.Channel, message.channel)
            await channel.basic_ack(delivery_tag=message.delivery_tag, wait=False)
        elif how == "ack":
            await message.ack()
        elif how == "reject":
            await message.reject(requeue=False)
        else:
            await message.nack(requeue=True)
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
