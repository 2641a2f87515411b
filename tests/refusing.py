"""A queue that makes the broker refuse (``Basic.Nack``) what is published to it: exclusive,
holding at most one message, ``x-overflow: reject-publish``."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq.abc import FieldTable

FULL: FieldTable = {"x-max-length": 1, "x-overflow": "reject-publish"}


async def refusing_queue(channel: AbstractChannel) -> AbstractQueue:
    """An exclusive queue of ``channel`` that refuses every publish while it holds one."""
    return await channel.declare_queue(exclusive=True, arguments=FULL)


def room_later(queue: AbstractQueue, after: float = 0.5) -> asyncio.Task[None]:
    """Take one message off ``queue`` after ``after`` seconds (so it takes the next one)."""

    async def make_room() -> None:
        await asyncio.sleep(after)
        message = await queue.get()
        await message.ack()

    return asyncio.create_task(make_room())
