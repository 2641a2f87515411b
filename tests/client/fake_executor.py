"""A stand-in executor: takes compute messages and reports scripted events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shoal.broker import publish
from shoal.model import Job
from shoal.topology import COMPUTE_QUEUE, EVENTS_EXCHANGE
from shoal.wire import ComputeRequest, JobEvent, decode

Script = Callable[[Job], list[JobEvent]]


@contextlib.asynccontextmanager
async def fake_executor(
    connection: AbstractRobustConnection, script: Script, *, gate: asyncio.Event | None = None
) -> AsyncIterator[list[Job]]:
    """Consume ``shoal.compute``; for each job publish ``script(job)`` (after ``gate``)."""
    channel = await connection.channel()
    events = await channel.get_exchange(EVENTS_EXCHANGE)
    queue = await channel.get_queue(COMPUTE_QUEUE)
    seen: list[Job] = []

    async def on_job(message: AbstractIncomingMessage) -> None:
        job = decode(message.body, ComputeRequest).job
        seen.append(job)
        if gate is not None:
            await gate.wait()
        for event in script(job):
            await publish(events, event.routing_key, event, user_id="guest")
        await message.ack()

    tag = await queue.consume(on_job)
    try:
        yield seen
    finally:
        with contextlib.suppress(Exception):
            await queue.cancel(tag)
        await channel.close()
