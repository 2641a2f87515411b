"""Declaring the broker's exchanges and queues, idempotently (names: ``shoal.names``).

Every work queue dead-letters to ``shoal.dlx`` after :data:`DELIVERY_LIMIT` redeliveries.
``shoal.dead`` keeps at most :data:`DEAD_MAX_LENGTH` messages / :data:`DEAD_MAX_BYTES`
bytes, dropping the oldest; the requester consumes it (``shoal.requester.deadletters``). A
``shoal.dead`` declared unbounded by an older Shoal keeps its arguments (RabbitMQ refuses to
change them): :func:`declare` then uses it as it is and logs how to bound it with a policy
(``scripts/ensure-rabbitmq.sh`` sets that policy on the default vhost).
``consumer_timeout`` is broker-wide on RabbitMQ 3.10: the set-up raises it (see
``scripts/ensure-rabbitmq.sh``) so that a long job holding its delivery is not cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aiormq.abc import FieldTable

from shoal.broker import reopened
from shoal.model import Job
from shoal.names import (
    API_QUEUE,
    BLOBS_KEY,
    CLAIMS_KEY,
    CLAIMS_QUEUE,
    COMPUTE_QUEUE,
    CONTROL_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    FLEET_EXCHANGE,
    HEARTBEAT_KEY,
    HEARTBEATS_QUEUE,
    PYTHON_WASM_COMPUTE_QUEUE,
    RECORDED_KINDS,
    RECORDER_QUEUE,
    REQUEST_QUEUES,
    REQUESTS_EXCHANGE,
    SUBMIT_QUEUE,
    WASM_COMPUTE_QUEUE,
    WORK_QUEUES,
    compute_queue,
    event_key,
    lane,
)

DEAD_MAX_LENGTH = 10_000
DEAD_MAX_BYTES = 256 * 1024 * 1024
DEAD_POLICY = (
    "rabbitmqctl set_policy --apply-to queues shoal-dead '^shoal\\.dead$' "
    f'\'{{"max-length":{DEAD_MAX_LENGTH},"max-length-bytes":{DEAD_MAX_BYTES},'
    '"overflow":"drop-head"}\''
)
"""The command that bounds an existing unbounded ``shoal.dead`` (add ``-p VHOST``)."""

log = structlog.get_logger(__name__)

__all__ = [
    "API_QUEUE",
    "CLAIMS_KEY",
    "CLAIMS_QUEUE",
    "COMPUTE_QUEUE",
    "CONTROL_EXCHANGE",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_QUEUE",
    "EVENTS_EXCHANGE",
    "FLEET_EXCHANGE",
    "HEARTBEATS_QUEUE",
    "PYTHON_WASM_COMPUTE_QUEUE",
    "RECORDER_QUEUE",
    "SUBMIT_QUEUE",
    "WASM_COMPUTE_QUEUE",
    "WORK_QUEUES",
    "Topology",
    "compute_queue",
    "declare",
    "declare_executor",
    "declare_fleet",
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


def dead_queue_arguments() -> FieldTable:
    """Arguments of ``shoal.dead``: quorum, bounded, the oldest dropped when full."""
    return {
        "x-queue-type": "quorum",
        "x-max-length": DEAD_MAX_LENGTH,
        "x-max-length-bytes": DEAD_MAX_BYTES,
        "x-overflow": "drop-head",
    }


async def _declare_dead(channel: AbstractChannel) -> AbstractQueue:
    """``shoal.dead`` bounded; an older unbounded one as it is, with a warning.

    The refused declaration closes the channel: a robust channel reopens itself (waited for,
    up to 10 s), a plain one is reopened here.
    """
    try:
        return await channel.declare_queue(
            DEAD_QUEUE, durable=True, arguments=dead_queue_arguments()
        )
    except aiormq.exceptions.ChannelPreconditionFailed:
        log.warning(
            "topology.dead_queue_unbounded",
            queue=DEAD_QUEUE,
            note="declared without bounds by an older Shoal; bound it with a policy",
            command=DEAD_POLICY,
        )
        await reopened(channel)
        return await channel.declare_queue(DEAD_QUEUE, passive=True)


@dataclass(frozen=True)
class Topology:
    """Handles to the declared exchanges and queues on one channel."""

    events: AbstractExchange
    control: AbstractExchange
    dead_letter: AbstractExchange
    queues: dict[str, AbstractQueue]
    fleet: AbstractExchange | None = None
    """``shoal.fleet`` (claims); declared by an executor only when it claims runs."""


def job_lane(job: Job) -> str:
    """The lane (and so the compute queue) of ``job`` (:func:`shoal.names.lane`)."""
    engine = job.task.engine
    return lane(engine.type, engine.params.get("runtime"))


async def declare_fleet(channel: AbstractChannel) -> AbstractExchange:
    """``shoal.fleet``: executors' claims and services' heartbeats to the requesters."""
    return await channel.declare_exchange(
        FLEET_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )


async def declare_executor(
    channel: AbstractChannel, *, claims: bool = False, engines: tuple[str, ...] = ("docker",)
) -> Topology:
    """Declare what an executor uses — the compute queue of each of its ``engines`` (lanes,
    ``shoal.names.lane``),
    ``shoal.events``, ``shoal.control``, the dead-letter exchange, and with ``claims``
    ``shoal.fleet`` (heartbeats declare it too, ``shoal.executor.heartbeat``) — and nothing its
    account may not touch (``shoal.roles``). ``shoal.claims`` and its binding are the requester's:
    until a requester declared them, a claim request comes back unrouted."""
    dead_letter = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    events = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    control = await channel.declare_exchange(
        CONTROL_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queues = {
        name: await channel.declare_queue(name, durable=True, arguments=work_queue_arguments())
        for name in (compute_queue(engine) for engine in engines)
    }
    fleet = await declare_fleet(channel) if claims else None
    return Topology(
        events=events,
        control=control,
        dead_letter=dead_letter,
        queues=queues,
        fleet=fleet,
    )


async def declare(channel: AbstractChannel) -> Topology:
    """Declare everything (idempotent: the same arguments every time)."""
    dead_letter = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead = await _declare_dead(channel)
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
    fleet = await declare_fleet(channel)
    await queues[CLAIMS_QUEUE].bind(fleet, routing_key=CLAIMS_KEY)
    await queues[API_QUEUE].bind(fleet, routing_key=BLOBS_KEY)
    await queues[HEARTBEATS_QUEUE].bind(fleet, routing_key=HEARTBEAT_KEY)
    queues[DEAD_QUEUE] = dead
    return Topology(
        events=events, control=control, dead_letter=dead_letter, queues=queues, fleet=fleet
    )
