"""The CLI's conversation with RabbitMQ: submit, RPC to ``shoal.api``, and job events.

Imported only by commands that talk to the broker, so ``shoal --help`` and ``--dry-run``
never load an AMQP library. Replies come over RabbitMQ's direct reply-to
(``amq.rabbitmq.reply-to``): no reply queue to declare, one round trip saved on every call.

The CLI speaks aiormq directly rather than through aio-pika: a CLI process makes one
connection for one short conversation, so aio-pika's robust reconnection buys nothing, and
skipping its import saves every ``shoal exec`` 20 to 40 ms. The guarantees are the same as
``shoal.broker.publish``: persistent, ``mandatory``, and a publish returns only once the broker
confirmed it; a returned (unroutable) submission is reported at once instead of timing out.

A broker that goes away mid-command (a restart, a network cut) is the one-line
``UnavailableError`` (exit 3) of every command: :func:`open_session` is the one place that
maps the AMQP library's errors, and every wait races the connection's end, so nothing
waits out a timeout for a reply that cannot come. Given several broker addresses (a
cluster's nodes), a wait for a job's end (``shoal.client.follow``) instead moves the session to the
next address that answers (:meth:`Session.reconnect`) and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic

from shoal.brokerurl import broker_urls, lost, unreachable_all
from shoal.errors import ProtocolError, ShoalError, UnavailableError, from_wire
from shoal.names import (
    API_QUEUE,
    DIRECT_REPLY_TO,
    EVENTS_EXCHANGE,
    REQUESTS_EXCHANGE,
    SUBMIT_QUEUE,
    event_key,
)
from shoal.wire import (
    CONTENT_TYPE,
    SCHEMA_VERSION,
    SUBMISSION_BATCH,
    ApiOp,
    ApiReply,
    ApiRequest,
    JobEvent,
    Message,
    Submission,
    SubmitBatchReply,
    SubmitReply,
    decode,
    encode,
)

from .blobs import BlobMemory, upload_shared
from .blocking import PERSISTENT, Endpoint
from .settings import ClientSettings
from .submit import checked

M = TypeVar("M", bound=Message)
T = TypeVar("T")

SUBMIT_WINDOW = 1024
"""Submissions in flight at once in :meth:`Session.submit_many`."""
BATCH_JOBS = 64
"""The most jobs :meth:`Session.submit_many` puts in one message (a ``submission-batch``)."""
BATCH_BYTES = 1024 * 1024
"""The most bytes of submissions it puts in one message (a larger one goes alone)."""

BROKER_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)
"""What the AMQP library raises when the connection or channel is gone."""


class Session:
    """One connection and channel; :func:`open_session` makes and closes it."""

    def __init__(
        self, settings: ClientSettings, connection: AbstractConnection, urls: list[str], url: str
    ) -> None:
        self.settings = settings
        self.urls = urls
        """Every broker address of the settings, in order."""
        self.url = url
        """The broker address it is connected to."""
        self.user = Endpoint.parse(url).user
        """The account this session is logged in as: every request carries it as
        ``user_id``, which the broker checks and the requester takes as the caller."""
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._counter = 0
        self._reconnecting = asyncio.Lock()
        self.generation = 0
        """How many times the session has moved to another connection."""
        self.blob_memory = BlobMemory()
        """The archives this session submitted, and which of them the requester holds."""
        self.batches = True
        """Whether ``submit_many`` sends batches (until a requester refuses one)."""

    async def _start(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)

    async def reconnect(self, generation: int) -> bool:
        """After the connection of ``generation`` dropped, connect to the next address that
        answers (round robin) and reopen the channel. ``False`` when the connection had not
        dropped (the trouble was something else), there is no other address, or none answers.
        Safe to call from several waiters at once: one reconnects, the others find it done."""
        async with self._reconnecting:
            if self.generation != generation:
                return True
            if not self._connection.is_closed or len(self.urls) < 2:
                return False
            at = self.urls.index(self.url)
            try:
                url, connection = await _connect(
                    self.urls[at + 1 :] + self.urls[: at + 1], self.settings.connect_timeout
                )
            except UnavailableError:
                return False
            self._connection, self.url, self._channel = connection, url, None
            self.generation += 1
            await self._start()
            return True

    async def close(self) -> None:
        """Close the connection (quietly: it may be gone already)."""
        with contextlib.suppress(Exception):
            await self._connection.close()

    async def wait(self, awaitable: Awaitable[T], seconds: float) -> T:
        """``awaitable``'s result, ``TimeoutError`` after ``seconds``, or
        ``UnavailableError`` as soon as the connection ends."""
        work = asyncio.ensure_future(awaitable)
        closing = self._connection.closing
        try:
            await asyncio.wait(
                {work, closing}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closing.cancel()  # only this observer
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        if closing.done() and not closing.cancelled():
            raise lost(self.url, closing.exception())
        raise TimeoutError

    async def _on_reply(self, message: DeliveredMessage) -> None:
        correlation = message.header.properties.correlation_id
        future = self._waiting.get(correlation or "")
        if future is not None and not future.done():
            future.set_result(message.body)

    async def _call(
        self, queue: str, request: Message, reply: type[M], *, expiration: float | None = None
    ) -> M:
        assert self._channel is not None
        self._counter += 1
        correlation = f"c{self._counter}"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        timeout = self.settings.rpc_timeout
        properties = Basic.Properties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            reply_to=DIRECT_REPLY_TO,
            correlation_id=correlation,
            user_id=self.user,
            expiration=None if expiration is None else str(max(1, round(expiration * 1000))),
        )
        try:
            try:
                confirmed = await self._channel.basic_publish(
                    encode(request),
                    exchange=REQUESTS_EXCHANGE,
                    routing_key=queue,
                    properties=properties,
                    mandatory=True,
                )
            except aiormq.exceptions.DeliveryError:
                confirmed = None
            if not isinstance(confirmed, Basic.Ack):
                raise UnavailableError(
                    f"queue {queue} does not exist: no requester has started on this broker "
                    "(shoal serve requester)"
                ) from None
            try:
                body = await self.wait(future, timeout)
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
        return checked(answer)

    async def submit_many(
        self,
        submissions: Sequence[Submission],
        window: int = SUBMIT_WINDOW,
        *,
        share: bool = True,
    ) -> list[SubmitReply | ShoalError]:
        """Submit every job, up to ``window`` at a time in flight (pipelined publishes, each
        confirmed); one result per submission, in order: its reply, or the typed error it
        met (a refused job does not stop the others). Archives that several jobs carry go
        to the requester once, as blobs the jobs name (``shoal.client.blobs``), as do archives this
        session submitted before, unless ``share`` is false (then every job carries its own).

        Jobs travel up to :data:`BATCH_JOBS` (and :data:`BATCH_BYTES`) to a message, as a
        ``submission-batch`` (one alone as a plain submission), in rounds of half the window,
        two rounds in flight: a round's messages leave in one socket write, then its confirms
        and replies are awaited together. A requester that does not know batches refuses
        the first with a ``ProtocolError``; the session then sends its jobs one a message."""
        if share:
            submissions = await upload_shared(self, submissions, self.blob_memory)
        bodies = [encode(submission) for submission in submissions]
        results: list[SubmitReply | ShoalError] = []
        size = max(1, window // 2)
        rounds = [bodies[start : start + size] for start in range(0, len(bodies), size)]
        slots = asyncio.Semaphore(2)

        async def one(bodies: list[bytes]) -> list[SubmitReply | ShoalError]:
            async with slots:
                return await self._submit_round(bodies)

        for answers in await asyncio.gather(*(one(r) for r in rounds)):
            results.extend(answers)
        return results

    async def _submit_round(self, bodies: list[bytes]) -> list[SubmitReply | ShoalError]:
        """Submit ``bodies`` (in batches when the requester takes them); each one's result."""
        groups = _batches(bodies) if self.batches else [[body] for body in bodies]
        answers = await self._publish_round(groups)
        results: list[SubmitReply | ShoalError] = []
        for group, answer in zip(groups, answers, strict=True):
            if answer is None:  # the requester does not take batches
                self.batches = False
                results += await self._submit_round(group)
            else:
                results += answer
        return results

    async def _publish_round(
        self, groups: list[list[bytes]]
    ) -> list[list[SubmitReply | ShoalError] | None]:
        """Publish one message per group (a batch, or a plain submission for a group of one)
        in one write; each group's results, ``None`` for a batch the requester cannot read."""
        from shoal.requester.framebatch import FrameBatch, confirmed

        channel = self._channel
        assert isinstance(channel, aiormq.Channel)
        timeout = self.settings.rpc_timeout
        expiration = str(max(1, round(timeout * 1000)))
        loop = asyncio.get_running_loop()
        batch = FrameBatch(channel)
        waiting: dict[str, asyncio.Future[bytes]] = {}
        confirms = []
        for group in groups:
            self._counter += 1
            correlation = f"c{self._counter}"
            waiting[correlation] = self._waiting[correlation] = loop.create_future()
            properties = Basic.Properties(
                content_type=CONTENT_TYPE,
                delivery_mode=PERSISTENT,
                reply_to=DIRECT_REPLY_TO,
                correlation_id=correlation,
                message_id=correlation,
                user_id=self.user,
                expiration=expiration,
                message_type=SUBMISSION_BATCH if len(group) > 1 else None,
            )
            body = batch_body(group) if len(group) > 1 else group[0]
            confirms.append(
                batch.publish(
                    SUBMIT_QUEUE, body, properties, mandatory=True, exchange=REQUESTS_EXCHANGE
                )
            )
        try:
            await batch.flush()
            try:
                outcomes = await self.wait(confirmed(confirms), timeout)
            except TimeoutError:
                outcomes = [TimeoutError() for _ in confirms]
            replies = list(waiting.values())
            sent = [r for r, outcome in zip(replies, outcomes, strict=True) if outcome is None]
            if sent:
                with contextlib.suppress(TimeoutError):
                    await self.wait(asyncio.wait(sent), timeout)
        except ShoalError as error:
            return [[error for _ in group] for group in groups]
        finally:
            for correlation in waiting:
                self._waiting.pop(correlation, None)
        return [
            _results(group, reply, outcome, timeout)
            for group, reply, outcome in zip(groups, replies, outcomes, strict=True)
        ]

    async def api(self, op: ApiOp, job_id: str | None = None, **params: Any) -> Any:
        """Call ``shoal.api``; the result, or the typed error raised."""
        request = ApiRequest(op=op, job_id=job_id, params=params)
        answer = await self._call(API_QUEUE, request, ApiReply)
        if answer.error is not None:
            raise from_wire(answer.error.model_dump())
        return answer.result

    @contextlib.asynccontextmanager
    async def events(self, job_id: str, owner: str) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        """Events of ``job_id`` (owned by ``owner``) from now on, through a private queue bound
        before yielding. The broker lets a user bind only their own jobs' events (an operator
        any job's)."""
        assert self._channel is not None
        declared = await self._channel.queue_declare("", exclusive=True, auto_delete=True)
        queue = str(declared.queue)
        key = event_key(owner, job_id, "*")
        await self._channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key=key)
        inbox: asyncio.Queue[JobEvent] = asyncio.Queue()

        async def on_event(message: DeliveredMessage) -> None:
            with contextlib.suppress(ShoalError):
                inbox.put_nowait(decode(message.body, JobEvent))

        consuming = await self._channel.basic_consume(queue, on_event, no_ack=True)
        try:
            yield inbox
        finally:
            with contextlib.suppress(Exception):
                await self._channel.basic_cancel(str(consuming.consumer_tag))


@contextlib.asynccontextmanager
async def open_session(settings: ClientSettings) -> AsyncIterator[Session]:
    """A connected session: ``UnavailableError`` if the broker cannot be reached, or if the
    connection breaks while inside.

    The AMQP libraries' own log lines are silenced: the CLI reports failures as one
    ``Type: message`` line.
    """
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    urls = broker_urls(settings.broker_url.get_secret_value())
    url, connection = await _connect(urls, settings.connect_timeout)
    session = Session(settings, connection, urls, url)
    try:
        await session._start()
        yield session
    except BrokenPipeError:
        raise  # our stdout, not the broker
    except BROKER_ERRORS as error:
        raise lost(session.url, error) from None
    finally:
        await session.close()


async def _connect(urls: list[str], seconds: float) -> tuple[str, AbstractConnection]:
    """The first of ``urls`` that answers and a connection to it, or ``UnavailableError``
    naming each broker (passwords hidden) and why it failed."""
    failures: list[tuple[str, BaseException]] = []
    for address in urls:
        try:
            async with asyncio.timeout(seconds):
                connection = await aiormq.connect(
                    address, client_properties={"connection_name": "shoal-cli"}
                )
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as error:
            failures.append((address, error))
        else:
            return address, connection
    raise unreachable_all(failures) from None


def _batches(bodies: list[bytes]) -> list[list[bytes]]:
    """``bodies`` in groups of consecutive ones, each at most :data:`BATCH_JOBS` jobs and
    :data:`BATCH_BYTES` (a larger body goes alone)."""
    groups: list[list[bytes]] = []
    size = 0
    for body in bodies:
        if groups and len(groups[-1]) < BATCH_JOBS and size + len(body) <= BATCH_BYTES:
            groups[-1].append(body)
            size += len(body)
        else:
            groups.append([body])
            size = len(body)
    return groups


def batch_body(bodies: list[bytes]) -> bytes:
    """A ``submission-batch`` body of encoded submissions (their JSON, joined unparsed)."""
    head = f'{{"schema_version":{SCHEMA_VERSION},"submissions":['.encode()
    return head + b",".join(bodies) + b"]}"


def _results(
    group: list[bytes], reply: asyncio.Future[bytes], sent: Exception | None, timeout: float
) -> list[SubmitReply | ShoalError] | None:
    """Each submission's result of one message (``group``, a batch when more than one):
    its reply, or the typed error; ``None`` for a batch an older requester refused whole."""
    if len(group) == 1:
        return [_reply(reply, sent, timeout)]
    if sent is not None or not reply.done():
        error = _reply(reply, sent, timeout)
        return [error for _ in group]
    body = reply.result()
    try:
        answer = decode(body, SubmitBatchReply)
    except ProtocolError:
        return None  # an older requester's submit-reply: it read the batch as one job
    if answer.error is not None:
        error = from_wire(answer.error.model_dump())
        return [error for _ in group]
    if len(answer.replies) != len(group):
        lacking = ProtocolError("the requester answered a batch with too few replies")
        return [lacking for _ in group]
    results: list[SubmitReply | ShoalError] = []
    for one in answer.replies:
        try:
            results.append(checked(one))
        except ShoalError as error:
            results.append(error)
    return results


def _reply(
    reply: asyncio.Future[bytes], sent: Exception | None, timeout: float
) -> SubmitReply | ShoalError:
    """One submission's result: its reply, or the typed error (the requester's, or
    ``UnavailableError`` when it was not confirmed or not answered in time)."""
    if sent is not None:
        if isinstance(sent, TimeoutError):
            return UnavailableError(f"the broker did not confirm a submission within {timeout:g}s")
        return UnavailableError(
            f"queue {SUBMIT_QUEUE} does not exist: no requester has started on this broker "
            "(shoal serve requester)"
        )
    if not reply.done():
        return UnavailableError(f"no requester answered within {timeout:g}s; is one running?")
    try:
        return checked(decode(reply.result(), SubmitReply))
    except ShoalError as error:
        return error
