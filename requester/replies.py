"""Answering a caller on its ``reply_to`` queue (direct reply-to or a private queue)."""

from __future__ import annotations

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from shoal.broker import publish
from shoal.wire import Message

log = structlog.get_logger(__name__)


async def reply(
    exchange: AbstractExchange, request: AbstractIncomingMessage, answer: Message
) -> bool:
    """Publish ``answer`` to the request's ``reply_to`` with its ``correlation_id``.

    A caller that has gone away (its reply queue no longer routes) is not an error of ours:
    logged, and ``False`` returned. Transport failures propagate, so the request is retried.
    """
    if not request.reply_to:
        return False
    try:
        await publish(
            exchange,
            request.reply_to,
            answer,
            correlation_id=request.correlation_id,
        )
    except aio_pika.exceptions.DeliveryError as error:
        log.info("reply.undeliverable", reply_to=request.reply_to, error=str(error))
        return False
    return True
