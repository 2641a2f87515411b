"""Declaring the broker's exchanges and queues, idempotently (names: ``shoal.names``).

Every work queue dead-letters to ``shoal.dlx`` after :data:`DELIVERY_LIMIT` redeliveries.
``consumer_timeout`` is broker-wide on RabbitMQ 3.10: the set-up raises it (see
``scripts/ensure-rabbitmq.sh``) so that a long job holding its delivery is not cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aiormq.abc import FieldTable

from shoal.names import (
    API_QUEUE,
    COMPUTE_QUEUE,
    CONTROL_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    RECORDED_KINDS,
    RECORDER_QUEUE,
    REQUEST_QUEUES,
    REQUESTS_EXCHANGE,
    SUBMIT_QUEUE,
    WORK_QUEUES,
    event_key,
)

__all__ = [
    "API_QUEUE",
    "COMPUTE_QUEUE",
    "CONTROL_EXCHANGE",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_QUEUE",
    "EVENTS_EXCHANGE",
    "RECORDER_QUEUE",
    "SUBMIT_QUEUE",
    "WORK_QUEUES",
    "Topology",
    "declare",
    "declare_executor",
    "work_queue_arguments",
]

DELIVERY_LIMIT = 5


def work_queue_arguments() -> FieldTable:
    """Arguments of every work queue: quorum, dead-lettered after a bounded redelivery."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-delivery-limit": DELIVERY_LIMIT,
    }


@dataclass(frozen=True)
class Topology:
    """Handles to the declared exchanges and queues on one channel."""

    events: AbstractExchange
    control: AbstractExchange
    dead_letter: AbstractExchange
    queues: dict[str, AbstractQueue]


async def declare_executor(channel: AbstractChannel) -> Topology:
    """Declare what an executor uses — the compute queue, ``shoal.events``, ``shoal.control``
    and the dead-letter exchange — and nothing its account may not touch (``shoal.roles``)."""
    dead_letter = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    events = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    control = await channel.declare_exchange(
        CONTROL_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    compute = await channel.declare_queue(
        COMPUTE_QUEUE, durable=True, arguments=work_queue_arguments()
    )
    return Topology(
        events=events, control=control, dead_letter=dead_letter, queues={COMPUTE_QUEUE: compute}
    )


async def declare(channel: AbstractChannel) -> Topology:
    """Declare everything (idempotent: the same arguments every time)."""
    dead_letter = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead = await channel.declare_queue(
        DEAD_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(dead_letter)
    events = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    control = await channel.declare_exchange(
        CONTROL_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queues = {
        name: await channel.declare_queue(name, durable=True, arguments=work_queue_arguments())
        for name in WORK_QUEUES
    }
    for kind in RECORDED_KINDS:
        await queues[RECORDER_QUEUE].bind(events, routing_key=event_key("*", "*", kind))
    requests = await channel.declare_exchange(
        REQUESTS_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    for name in REQUEST_QUEUES:
        await queues[name].bind(requests, routing_key=name)
    queues[DEAD_QUEUE] = dead
    return Topology(events=events, control=control, dead_letter=dead_letter, queues=queues)
