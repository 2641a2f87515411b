"""Telling the others that the requester ended a job itself (a sweep, a dead letter).

The store already holds the end; this only spreads it: a ``state`` event for followers and
the recorders (who record it as a no-op and announce ``recorded``), and a stop on
``shoal.control`` so no executor runs or keeps running the job. A lost announcement costs
nothing lasting: followers ask the store again after a quiet spell.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange

from shoal.broker import publish
from shoal.model import JobState
from shoal.wire import ControlMessage, JobEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Announcer:
    """Publishes what the requester decided itself, signed with its own account."""

    events: AbstractExchange
    control: AbstractExchange
    account: str
    """The requester's broker account: the recorder records events only from trusted ones."""

    async def failed(self, job_id: str, owner: str, reason: str) -> None:
        """Publish the job's ``failed`` event (keyed by its ``owner``), then tell executors
        to stop it."""
        event = JobEvent(
            job_id=job_id, owner=owner, kind="state", state=JobState.FAILED, error=reason
        )
        await publish(self.events, event.routing_key, event, user_id=self.account)
        try:
            await publish(self.control, "", ControlMessage(job_id=job_id, reason=reason))
        except aio_pika.exceptions.DeliveryError:
            log.debug("job.stop_unheard", job_id=job_id, note="no executor is listening")
