"""The cluster view behind ``shoal status``: services' heartbeats and the queues' depth.

Executors publish a :class:`~shoal.wire.Heartbeat` every ``heartbeat_every`` seconds to
``shoal.fleet`` (key ``heartbeat``, routed to ``shoal.heartbeats``); whichever requester
consumes it keeps it in the store (:class:`HeartbeatRecorder`), so every requester sharing
a Postgres store answers with the same view. A requester writes its own heartbeat straight
to the store (:func:`beat`) and removes it when it stops cleanly. A node drops out of the
view ``MISSES`` intervals after its last heartbeat (``shoal.requester.store.nodes``); an executor
whose broker connection is gone (it stopped, cleanly or not: its exclusive control queue went
with the connection) drops out at the next ``status`` (:func:`without_gone`).

Queue depth is read on demand by a passive declare (:func:`queue_depths`), which tells the
ready count and the consumers; AMQP does not tell the unacknowledged count, so for each
compute queue it is the sum of what the live executors say they hold of it (heartbeat
``held_by_queue``, :func:`with_unacknowledged`), and for the other queues it is left out
(``null``; RabbitMQ's management API has it).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

import shoal
from shoal.errors import ProtocolError
from shoal.names import COMPUTE_QUEUE, COMPUTE_QUEUES, DEAD_QUEUE, WORK_QUEUES
from shoal.wire import Heartbeat, decode

from . import delivery
from .access import Access
from .store import JobStore
from .store.nodes import MISSES
from .submissions import RetryPolicy

log = structlog.get_logger(__name__)

QUEUES = (*WORK_QUEUES, DEAD_QUEUE)
"""The queues whose depth ``shoal status`` shows, in this order."""

Depths = Callable[[], Awaitable[list[dict[str, Any]]]]


async def queue_depths(channel: AbstractChannel) -> list[dict[str, Any]]:
    """Each Shoal queue's ``name``, ``ready`` and ``consumers`` (a passive declare each)."""
    found = []
    for name in QUEUES:
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        found.append(
            {"name": name, "ready": result.message_count or 0, "consumers": result.consumer_count}
        )
    return found


async def without_gone(
    nodes: Sequence[dict[str, Any]],
    alive: Callable[[str], Awaitable[bool]],
    forget: Callable[[str], Awaitable[None]],
) -> list[dict[str, Any]]:
    """``nodes`` less the executors that ``alive`` says are gone, which are ``forget``-ten."""
    executors = [node for node in nodes if node["role"] == "executor"]
    answers = await asyncio.gather(*(alive(node["node_id"]) for node in executors))
    gone = {node["node_id"] for node, up in zip(executors, answers, strict=True) if not up}
    for node_id in gone:
        await forget(node_id)
    return [node for node in nodes if node["node_id"] not in gone]


def with_unacknowledged(
    nodes: Sequence[dict[str, Any]], queues: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``queues`` with ``unacknowledged``: for a compute queue, the deliveries of it that the
    executors among ``nodes`` hold (a heartbeat without ``held_by_queue``, from an older
    executor, counts its ``held`` for ``shoal.compute``); ``None`` for the other queues."""
    held: Counter[str] = Counter()
    for node in nodes:
        if node["role"] == "executor":
            held.update(node.get("held_by_queue") or {COMPUTE_QUEUE: node["held"]})
    compute = set(COMPUTE_QUEUES.values())
    return [
        {**queue, "unacknowledged": held[queue["name"]] if queue["name"] in compute else None}
        for queue in queues
    ]


def status(
    nodes: Sequence[dict[str, Any]], queues: Sequence[dict[str, Any]], *, operator: bool
) -> dict[str, Any]:
    """The ``status`` answer: live ``nodes`` (job IDs only for an ``operator``: the others
    see how many), ``queues`` with ``unacknowledged`` where it is known, and ``misses``."""
    shown = [
        {
            **node,
            "held_by_queue": node.get("held_by_queue", {}),
            "running": node["running"] if operator else len(node["running"]),
        }
        for node in nodes
    ]
    return {"nodes": shown, "queues": with_unacknowledged(nodes, queues), "misses": MISSES}


class HeartbeatRecorder:
    """Consumer callback for ``shoal.heartbeats``: keep each heartbeat of an executor account."""

    def __init__(self, store: JobStore, access: Access, retry: RetryPolicy) -> None:
        self._store = store
        self._access = access
        self._retry = retry

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        try:
            heartbeat = decode(message.body, Heartbeat)
        except ProtocolError as error:
            log.warning("heartbeat.refused", error=error.message)
            await delivery.dead_letter(message)
            return
        if not self._access.is_executor(message.user_id):
            log.warning("heartbeat.refused", error="not an executor account", user=message.user_id)
            await delivery.ack(message)
            return
        try:
            await self._store.record_heartbeat(heartbeat)
        except Exception as error:
            log.warning("heartbeat.retry", error=f"{type(error).__name__}: {error}")
            await delivery.retry_later(message, self._retry.base_delay, self._retry.max_delay)
            return
        await delivery.ack(message)


def requester_node_id(name: str) -> str:
    """This requester process's node ID in the view."""
    return f"{name}-{os.getpid()}"


async def beat(store: JobStore, node_id: str, host: str, interval: float) -> None:
    """Write this requester's heartbeat every ``interval`` seconds and prune expired ones;
    a failed write is logged and tried at the next beat."""
    while True:
        heartbeat = Heartbeat(
            node_id=node_id,
            role="requester",
            host=host,
            version=shoal.__version__,
            interval=interval,
        )
        try:
            await store.record_heartbeat(heartbeat)
            await store.prune_nodes()
        except Exception as error:
            log.warning("heartbeat.failed", error=f"{type(error).__name__}: {error}")
        await asyncio.sleep(interval)
