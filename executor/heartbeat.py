"""An executor's heartbeat: what it is and how busy, every ``heartbeat_every`` seconds.

Published to ``shoal.fleet`` with key ``heartbeat`` (routed to ``shoal.heartbeats``, read by
a requester into the view behind ``shoal status``, see ``shoal.requester.fleet``), signed with the
executor's account (``user_id``). Not mandatory: before any requester declared the queue a
heartbeat is dropped. Each expires in the queue after the view would have dropped it, so a
backlog never piles up while no requester runs. A failed publish (the broker is away) is
logged and the next beat tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aio_pika.abc import AbstractRobustConnection

import shoal
from shoal.broker import Renewal, broker_user, publish
from shoal.executor.settings import ExecutorSettings
from shoal.names import HEARTBEAT_KEY
from shoal.topology import declare_fleet
from shoal.wire import HEARTBEAT_MISSES, Heartbeat

log = structlog.get_logger(__name__)

IMAGES_TIMEOUT = 5.0
"""Seconds a beat waits for the Docker engine to say which runtime images it holds."""


@dataclass(frozen=True)
class Busy:
    """How busy the executor is now."""

    jobs: list[str]
    """IDs of the jobs it has taken (running, or waiting for a slot)."""
    held: dict[str, int]
    """Deliveries it holds unacknowledged, by compute queue (only the queues it holds some of)."""
    draining: bool


def start_heartbeat(
    connection: AbstractRobustConnection,
    settings: ExecutorSettings,
    executor_id: str,
    engines: Sequence[str],
    busy: Callable[[], Busy],
    images: Callable[[], Awaitable[list[str]]] | None = None,
) -> asyncio.Task[None]:
    """Beat until the task is cancelled (``images``: the runtime images the node holds)."""
    return asyncio.create_task(
        _beat(connection, settings, executor_id, list(engines), busy, images)
    )


async def _beat(
    connection: AbstractRobustConnection,
    settings: ExecutorSettings,
    executor_id: str,
    engines: list[str],
    busy: Callable[[], Busy],
    images: Callable[[], Awaitable[list[str]]] | None,
) -> None:
    channel = await connection.channel()
    fleet = await declare_fleet(channel)
    renew = Renewal(channel)
    account = broker_user(settings.broker_url.get_secret_value())
    interval = settings.heartbeat_every
    held: list[str] = []
    while True:
        if images is not None:
            try:
                async with asyncio.timeout(IMAGES_TIMEOUT):
                    held = await images()
            except Exception as error:  # the engine is slow or away: say what was seen last
                log.warning("heartbeat.images_unknown", error=f"{type(error).__name__}: {error}")
        now = busy()
        heartbeat = Heartbeat(
            node_id=executor_id,
            role="executor",
            host=settings.node_id,
            version=shoal.__version__,
            engines=engines,
            images=held,
            slots=settings.slots,
            running=now.jobs,
            held=sum(now.held.values()),
            held_by_queue=now.held,
            draining=now.draining,
            interval=interval,
        )
        try:
            await publish(
                fleet,
                HEARTBEAT_KEY,
                heartbeat,
                mandatory=False,
                renew=renew,
                user_id=account,
                expiration=HEARTBEAT_MISSES * interval,
            )
        except Exception as error:  # the broker is away: the next beat tries again
            log.warning("heartbeat.failed", error=f"{type(error).__name__}: {error}")
        await asyncio.sleep(interval)
