"""RabbitMQ names and their idempotent declaration.

::

    shoal.submit   quorum queue   client → requester (reply_to + correlation_id)
    shoal.compute  quorum queue   requester → executors
    shoal.api      quorum queue   client → requester RPC over the job store
    shoal.claims   quorum queue   executor → requester RPC: claim, renew, release runs
    shoal.events   topic exchange job.<id>.<state|log|result> → shoal.recorder (quorum queue)
                                  job.<id>.recorded (from the recorder) and all of the above
                                  → private follower queues of ``--wait`` / ``--follow``
    shoal.control  fanout exchange stop requests → every executor's private queue
    shoal.dlx      fanout exchange dead letters → shoal.dead (quorum queue)

Every work queue dead-letters to ``shoal.dlx`` after :data:`DELIVERY_LIMIT` redeliveries.
``consumer_timeout`` is broker-wide on RabbitMQ 3.10: the set-up raises it (see
``scripts/ensure-rabbitmq.sh``) so that a long job holding its delivery is not cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aiormq.abc import FieldTable

SUBMIT_QUEUE = "shoal.submit"
COMPUTE_QUEUE = "shoal.compute"
API_QUEUE = "shoal.api"
CLAIMS_QUEUE = "shoal.claims"
RECORDER_QUEUE = "shoal.recorder"
DEAD_QUEUE = "shoal.dead"
EVENTS_EXCHANGE = "shoal.events"
CONTROL_EXCHANGE = "shoal.control"
DEAD_LETTER_EXCHANGE = "shoal.dlx"
DELIVERY_LIMIT = 5

WORK_QUEUES = (SUBMIT_QUEUE, COMPUTE_QUEUE, API_QUEUE, RECORDER_QUEUE, CLAIMS_QUEUE)
RECORDED_KINDS = ("state", "log", "result")
"""Event kinds the recorder stores; it publishes ``recorded`` itself."""


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
        await queues[RECORDER_QUEUE].bind(events, routing_key=f"job.*.{kind}")
    queues[DEAD_QUEUE] = dead
    return Topology(events=events, control=control, dead_letter=dead_letter, queues=queues)
