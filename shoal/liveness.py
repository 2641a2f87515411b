"""Whether an executor is running, told by the broker.

An executor's control queue is named after it (``shoal.executor.<executor id>``) and is
exclusive, so the broker holds it exactly as long as that executor's connection is open:
another client declaring it passively gets ``RESOURCE_LOCKED`` while it lives and
``NOT_FOUND`` once it is gone. Executors use this to reap orphaned containers, the requester
to hand a claimed run to another executor when its holder is gone (``shoal.requester.claims``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity

log = structlog.get_logger("liveness")

Alive = Callable[[str], Awaitable[bool]]
"""Whether the executor with this ID is running (connected to the broker), as
:func:`executor_alive` of a connection tells."""


def executor_queue(executor_id: str) -> str:
    """The name of an executor's control queue: exclusive, so it lives as long as it does."""
    return f"shoal.executor.{executor_id}"


async def executor_alive(connection: AbstractConnection, executor_id: str) -> bool:
    """Whether ``executor_id`` holds its control queue; True when that cannot be told."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(executor_queue(executor_id), passive=True)
    except ChannelLockedResource:
        return True  # exclusive to another open connection: the executor runs
    except ChannelNotFoundEntity:
        return False
    except Exception as error:  # unsure: keep its containers
        log.warning("liveness.unknown", executor=executor_id, error=str(error))
        return True
    finally:
        if not channel.is_closed:
            await channel.close()
    log.warning("liveness.unknown", executor=executor_id, error="its queue is not exclusive")
    return True
