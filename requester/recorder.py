"""The state recorder: ``shoal.events`` (via the ``shoal.recorder`` queue) into the job store.

Events may arrive in any order and more than once (several executors, redeliveries, several
requesters): the store's writes are order-safe (states only move forward, log chunks are
keyed by ``seq``), so the recorder writes whatever comes and acks after the commit. Events
are written in rounds (group commit) to keep up with chatty logs.

Only events published by executor accounts are recorded (``shoal.requester.access``: the broker
checks the ``user_id`` an executor signs its events with), and only for the runs that
account runs: the first account whose event for a (job, executor) run is recorded owns the
run, and another account's events for it are refused; so are the events of an attempt that
no longer holds its job's claim (``store.claims``). A refused event is logged and acked.

After each round, every job of the round that is terminal and has all the events of its
ended run in the store gets a ``job.<id>.recorded`` event: ``--wait`` returns on it, so a
user who then asks for logs and outputs finds them. Each recorder checks after its own
commit, so with several requesters the last one to commit an event of the run announces it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from shoal import limits
from shoal.broker import publish
from shoal.errors import ProtocolError, TooLargeError
from shoal.wire import JobEvent, decode

from . import delivery
from .access import Access
from .batching import Batcher
from .store import JobStore
from .submissions import RetryPolicy

log = structlog.get_logger(__name__)


class Recorder:
    """Consumer callback for ``shoal.recorder``."""

    def __init__(
        self,
        store: JobStore,
        retry: RetryPolicy,
        access: Access,
        events: AbstractExchange | None = None,
    ) -> None:
        self._store = store
        self._retry = retry
        self._access = access
        self._events = events
        self._rounds = Batcher(self._write)
        self.observers: list[Callable[[JobEvent], None]] = []
        """Called with each event once it is committed (metrics, tests)."""

    async def _write(self, signed: Sequence[tuple[JobEvent, str]]) -> list[bool]:
        events = [event for event, _ in signed]
        written = await self._store.record_events(events, [account for _, account in signed])
        if self._events is not None:
            for done in await self._store.fully_recorded([e.job_id for e in events]):
                await publish(
                    self._events,
                    done.routing_key,
                    done,
                    mandatory=False,
                    user_id=self._access.requester,
                )
        return written

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Record one event; poison is dead-lettered, store failures retried."""
        try:
            limits.check_body(message.body, limits.MAX_MESSAGE_BYTES, "job event")
            event = decode(message.body, JobEvent)
        except (ProtocolError, TooLargeError) as error:
            log.warning("event.refused", error=error.message, routing_key=message.routing_key)
            await delivery.dead_letter(message)
            return
        if event.kind == "recorded":  # our own notice, routed here by an older binding
            await delivery.ack(message)
            return
        if not self._access.is_executor(message.user_id):
            log.warning(
                "event.refused",
                job_id=event.job_id,
                user=message.user_id,
                error="not from an executor account",
            )
            await delivery.ack(message)
            return
        try:
            written = await self._rounds.submit((event, str(message.user_id)))
        except Exception as error:
            log.warning(
                "event.retry", job_id=event.job_id, error=f"{type(error).__name__}: {error}"
            )
            await delivery.retry_later(message, self._retry.base_delay, self._retry.max_delay)
            return
        await delivery.ack(message)
        if not written:
            log.warning(
                "event.refused",
                job_id=event.job_id,
                user=message.user_id,
                executor=event.executor,
                attempt=event.attempt,
                error="a stale attempt, or another account runs this execution",
            )
            return
        for observe in self.observers:
            observe(event)
        if event.kind == "state":
            log.info(
                "job.state",
                job_id=event.job_id,
                state=event.state,
                exit_code=event.exit_code,
                executor=event.executor,
            )

    async def close(self) -> None:
        """Finish the round in progress."""
        await self._rounds.close()
