"""Publishing on the submission hot path: straight on the channel's aiormq channel.

``shoal.broker.publish`` goes through aio-pika: an ``aio_pika.Message`` per call (~13 µs),
and ``Exchange.publish`` holds the channel's lock until the frame has been written and
drained, so publishes on one channel leave one at a time. Here the properties are a pamqp
object (~1 µs) and the frame is queued without waiting for the drain (``wait=False``): many
publishes are in flight on one channel, each awaiting its own confirm.

The guarantees are Shoal's as everywhere: messages are persistent and ``mandatory``, and on a
channel with publisher confirms :meth:`Publisher.publish` returns only once the broker sent
``Basic.Ack``. A message the broker could not route comes back as ``Basic.Return``: that
raises :class:`NotConfirmedError` (aio-pika would hand the returned message back as a result,
which a caller that ignores the result takes for a confirm). A nack raises aiormq's
``DeliveryError``; a closed channel raises too. After a reconnection the robust channel
hands out its new aiormq channel.
"""

from __future__ import annotations

from typing import cast

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from shoal.wire import CONTENT_TYPE

PERSISTENT = 2


class NotConfirmedError(Exception):
    """The broker returned a ``mandatory`` message (no queue for its routing key), or
    answered the publish with something other than ``Basic.Ack``."""


def properties(
    *, message_id: str | None = None, correlation_id: str | None = None
) -> Basic.Properties:
    """Properties of a persistent JSON message; one object per publish (aiormq fills in a
    ``message_id`` when there is none)."""
    return Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
    )


class Publisher:
    """Publishes to the default exchange of ``channel`` (a robust aio-pika channel)."""

    def __init__(self, channel: AbstractChannel, *, confirmed: bool) -> None:
        self._channel = channel
        self._confirmed = confirmed

    async def publish(
        self, routing_key: str, body: bytes, props: Basic.Properties, *, mandatory: bool
    ) -> None:
        """Queue the frame; on a confirming channel, wait for the broker's ``Basic.Ack``."""
        raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        result = await raw.basic_publish(
            body,
            exchange="",
            routing_key=routing_key,
            properties=props,
            mandatory=mandatory,
            wait=False,
        )
        if isinstance(result, DeliveredMessage):
            raise NotConfirmedError(f"the broker returned a message for {routing_key!r}: no queue")
        if self._confirmed and not isinstance(result, Basic.Ack):
            raise NotConfirmedError(f"the broker did not confirm a message for {routing_key!r}")
