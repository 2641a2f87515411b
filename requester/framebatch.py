"""Many AMQP frames in one socket write: the submission pipeline's publishes and acks, and
the client's pipelined submissions (``Session.submit_many``).

aiormq writes every publish and every ack as its own frame, one ``send`` each, and a
publish takes the channel lock, a timeout scope and a drain future. Per submission that is
three writes (compute message, reply, ack), and the writes alone were a fifth of the
requester's CPU. A :class:`FrameBatch` collects a round's frames for one channel and hands
them to the connection's writer as a single ``ChannelFrame``: one write for a whole round.

Publisher confirms keep working the way aiormq does them, since the broker numbers a
channel's publishes implicitly: under the channel lock, after the frame is queued, each
publish takes the next ``delivery_tag`` and registers its confirmation future (and its
``message_id``, which is how aiormq matches a ``Basic.Return``). Those are aiormq's own
channel attributes, used here exactly as its ``basic_publish`` uses them (aiormq 7.2).

The guarantees are Shoal's as everywhere: messages are persistent JSON, ``mandatory`` where
asked, and :meth:`FrameBatch.confirmed` reports a message as sent only once the broker
answered ``Basic.Ack``; a returned (unroutable) message, a nack or a closed channel count as
not sent.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiormq
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands
from pamqp.constants import FRAME_BODY, FRAME_END_CHAR, FRAME_HEADER
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from shoal.broker import refused
from shoal.wire import CONTENT_TYPE

PERSISTENT = 2


class NotConfirmedError(Exception):
    """The broker returned a ``mandatory`` message (no queue for its routing key), or
    answered the publish with something other than ``Basic.Ack``."""


class RefusedError(NotConfirmedError):
    """The broker answered the publish with ``Basic.Nack``."""


def properties(
    *, message_id: str | None = None, correlation_id: str | None = None
) -> commands.Basic.Properties:
    """Properties of a persistent JSON message."""
    return commands.Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
    )


@dataclass
class _Publish:
    future: asyncio.Future[object] | None
    message_id: str | None


@dataclass
class FrameBatch:
    """Frames for one aiormq channel, sent together by :meth:`flush`."""

    channel: aiormq.Channel
    _frames: list[bytes] = field(default_factory=list)
    _publishes: list[_Publish] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._frames)

    def publish(
        self,
        routing_key: str,
        body: bytes,
        props: commands.Basic.Properties,
        *,
        mandatory: bool,
        exchange: str = "",
    ) -> asyncio.Future[object] | None:
        """Add a publish to ``exchange`` (the default one unless named); on a confirming
        channel, the future that :meth:`confirmed` reads (``None`` on a channel without
        confirms). A ``mandatory`` message should carry a ``message_id``: it is how a return
        is matched to its publish."""
        number = self.channel.number
        parts = [
            _publish_frame(number, exchange, routing_key, mandatory),
            header_frame(number, len(body), props),
        ]
        limit = self.channel.max_content_size
        for start in range(0, len(body), limit):
            chunk = body[start : start + limit]
            parts += (_FRAME_START.pack(FRAME_BODY, number, len(chunk)), chunk, FRAME_END_CHAR)
        self._frames.append(b"".join(parts))
        future = self.channel.create_future() if self.channel.publisher_confirms else None
        self._publishes.append(_Publish(future, props.message_id))
        return future

    def ack(self, delivery_tag: int) -> None:
        """Add an ack of one delivery."""
        frame = commands.Basic.Ack(delivery_tag=delivery_tag)
        self._frames.append(marshal(frame, self.channel.number))

    async def flush(self) -> None:
        """Queue every frame added so far as one write; raises if the channel is closed."""
        if not self._frames:
            return
        channel = self.channel
        frame = ChannelFrame(payload=b"".join(self._frames), should_close=False)
        publishes = self._publishes
        self._frames, self._publishes = [], []
        async with channel.lock:
            await channel.write_queue.put(frame)
            # Queued and nothing awaited since: no confirm can arrive before these exist.
            for publish in publishes:
                channel.delivery_tag += 1
                if publish.future is None:
                    continue
                tag = channel.delivery_tag
                channel.confirmations[tag] = publish.future
                if publish.message_id:
                    _track_returns(channel, publish.message_id, tag, publish.future)


@functools.lru_cache(maxsize=1024)
def _publish_frame(channel_number: int, exchange: str, routing_key: str, mandatory: bool) -> bytes:
    """The ``Basic.Publish`` frame (the same for every message to a queue: the compute
    queue, one caller's reply queue, or ``shoal.submit``)."""
    method = commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory)
    return marshal(method, channel_number)


_FRAME_START = struct.Struct(">BHI")
_HEADER_START = struct.Struct(">HHQH")
_PROPERTIES = [
    (name, commands.Basic.Properties.flags[name], getattr(commands.Basic.Properties, f"_{name}"))
    for name in commands.Basic.Properties.__slots__
]


def header_frame(channel_number: int, body_size: int, props: commands.Basic.Properties) -> bytes:
    """The content header frame of a message: what pamqp's ``marshal(ContentHeader(...))``
    gives, byte for byte, built directly for properties that are short strings and octets
    (pamqp's generic encoder cost a tenth of a submission's CPU). Anything else (headers,
    a timestamp, a string over 255 bytes) goes through pamqp."""
    flags = 0
    parts: list[bytes] = []
    for name, flag, kind in _PROPERTIES:
        value = getattr(props, name)
        if value is None or value == "":
            continue
        if kind == "shortstr" and isinstance(value, str):
            raw = value.encode()
            if len(raw) > 255:
                return marshal(ContentHeader(0, body_size, props), channel_number)
            parts += (bytes((len(raw),)), raw)
        elif kind == "octet" and isinstance(value, int) and 0 <= value <= 255:
            parts.append(bytes((value,)))
        else:
            return marshal(ContentHeader(0, body_size, props), channel_number)
        flags |= flag
    payload = b"".join([_HEADER_START.pack(commands.Basic.frame_id, 0, body_size, flags), *parts])
    return b"".join(
        [_FRAME_START.pack(FRAME_HEADER, channel_number, len(payload)), payload, FRAME_END_CHAR]
    )


def _track_returns(
    channel: aiormq.Channel, message_id: str, tag: int, future: asyncio.Future[object]
) -> None:
    """Let aiormq match a ``Basic.Return`` to this publish (it looks up the message ID)."""
    channel.message_id_delivery_tag[message_id] = tag

    def forget(_: asyncio.Future[object]) -> None:
        if channel.message_id_delivery_tag.get(message_id) == tag:
            del channel.message_id_delivery_tag[message_id]

    future.add_done_callback(forget)


async def confirmed(futures: Sequence[asyncio.Future[object] | None]) -> list[Exception | None]:
    """Wait for each publish's answer: ``None`` when the broker confirmed it, else why not."""
    waiting = [future for future in futures if future is not None]
    if waiting:
        await asyncio.wait(waiting)
    return [_outcome(future) for future in futures]


def _outcome(future: asyncio.Future[object] | None) -> Exception | None:
    if future is None:
        return None
    if future.cancelled():
        return NotConfirmedError("the publish was cancelled")
    error = future.exception()
    if error is not None and refused(error):
        return RefusedError(f"the broker refused a message: {error}")
    if error is not None:
        return error if isinstance(error, Exception) else NotConfirmedError(repr(error))
    answer = future.result()
    if isinstance(answer, DeliveredMessage):
        return NotConfirmedError(
            f"the broker returned a message for {answer.routing_key!r}: no queue"
        )
    if not isinstance(answer, commands.Basic.Ack):
        return NotConfirmedError(f"the broker did not confirm a message: {answer!r}")
    return None
