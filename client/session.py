"""The CLI's conversation with RabbitMQ: submit, RPC to ``shoal.api``, and job events.

Imported only by commands that talk to the broker, so ``shoal --help`` and ``--dry-run``
never load aio-pika. Replies come over RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to``):
no reply queue to declare, one round trip saved on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from aiormq.abc import DeliveredMessage

from shoal.broker import connect, publish
from shoal.errors import ProtocolError, ShoalError, UnavailableError, from_wire
from shoal.topology import API_QUEUE, EVENTS_EXCHANGE, SUBMIT_QUEUE
from shoal.wire import (
    ApiOp,
    ApiReply,
    ApiRequest,
    JobEvent,
    Message,
    Submission,
    SubmitReply,
    decode,
)

from .settings import ClientSettings

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

M = TypeVar("M", bound=Message)


class Session:
    """One connection and channel; :func:`open_session` makes and closes it."""

    def __init__(self, settings: ClientSettings, connection: AbstractRobustConnection) -> None:
        self.settings = settings
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._counter = 0

    async def _start(self) -> None:
        self._channel = await self._connection.channel()
        raw = await self._channel.get_underlay_channel()
        await raw.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)

    async def _on_reply(self, message: DeliveredMessage) -> None:
        correlation = message.header.properties.correlation_id
        future = self._waiting.get(correlation or "")
        if future is not None and not future.done():
            future.set_result(message.body)

    async def _call(self, queue: str, request: Message, reply: type[M], **props: Any) -> M:
        assert self._channel is not None
        self._counter += 1
        correlation = f"c{self._counter}"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        timeout = self.settings.rpc_timeout
        try:
            try:
                await publish(
                    self._channel.default_exchange,
                    queue,
                    request,
                    reply_to=DIRECT_REPLY_TO,
                    correlation_id=correlation,
                    **props,
                )
            except aio_pika.exceptions.DeliveryError:
                raise UnavailableError(
                    f"queue {queue} does not exist: no requester has started on this broker "
                    "(shoal serve requester)"
                ) from None
            try:
                body = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise UnavailableError(
                    f"no requester answered within {timeout:g}s; is one running?"
                ) from None
        finally:
            self._waiting.pop(correlation, None)
        return decode(body, reply)

    async def submit(self, submission: Submission) -> SubmitReply:
        """Submit a job; the reply names the job to follow. Typed errors are raised.

        The submission expires when nobody answered in time, so a timed-out ``exec`` (exit 3)
        does not start a job later (expired submissions are dead-lettered, not dropped).
        """
        answer = await self._call(
            SUBMIT_QUEUE, submission, SubmitReply, expiration=self.settings.rpc_timeout
        )
        if answer.error is not None:
            raise from_wire(answer.error.model_dump())
        if not answer.job_id:
            raise ProtocolError("the requester's reply names no job")
        return answer

    async def api(self, op: ApiOp, job_id: str | None = None, **params: Any) -> Any:
        """Call ``shoal.api``; the result, or the typed error raised."""
        request = ApiRequest(op=op, job_id=job_id, params=params)
        answer = await self._call(API_QUEUE, request, ApiReply)
        if answer.error is not None:
            raise from_wire(answer.error.model_dump())
        return answer.result

    @contextlib.asynccontextmanager
    async def events(self, job_id: str) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        """Events of ``job_id`` from now on, through a private queue bound before yielding."""
        assert self._channel is not None
        queue: AbstractQueue = await self._channel.declare_queue(
            "", exclusive=True, auto_delete=True
        )
        await queue.bind(EVENTS_EXCHANGE, routing_key=f"job.{job_id}.*")
        inbox: asyncio.Queue[JobEvent] = asyncio.Queue()

        async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            with contextlib.suppress(ShoalError):
                inbox.put_nowait(decode(message.body, JobEvent))

        tag = await queue.consume(on_event, no_ack=True)
        try:
            yield inbox
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)


@contextlib.asynccontextmanager
async def open_session(settings: ClientSettings) -> AsyncIterator[Session]:
    """A connected session (``UnavailableError`` if the broker cannot be reached).

    The AMQP libraries' own log lines are silenced: the CLI reports failures as one
    ``Type: message`` line.
    """
    for name in ("aio_pika", "aiormq"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    connection = await connect(
        settings.broker_url.get_secret_value(),
        connect_timeout=settings.connect_timeout,
        name="shoal-cli",
    )
    try:
        session = Session(settings, connection)
        await session._start()
        yield session
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
