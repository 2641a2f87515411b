"""Answering a caller on its ``reply_to`` queue (direct reply-to or a private queue).

Replies go out on a channel of their own without publisher confirms: a reply is for a caller
that is waiting right now, there is nothing to redeliver it to if it is lost (the caller times
out, and retries safely with the same idempotency key), and waiting for a confirm of each one
would cost the submission pipeline a third of its throughput. The reply is still written
before the request is acked.
"""

from __future__ import annotations

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from shoal.broker import make_message
from shoal.wire import Message


async def reply(
    exchange: AbstractExchange, request: AbstractIncomingMessage, answer: Message
) -> bool:
    """Send ``answer`` to the request's ``reply_to`` with its ``correlation_id``.

    ``False`` when the request named no ``reply_to``. Transport failures propagate, so the
    request is retried.
    """
    if not request.reply_to:
        return False
    await exchange.publish(
        make_message(answer, correlation_id=request.correlation_id),
        routing_key=request.reply_to,
        mandatory=False,
    )
    return True
