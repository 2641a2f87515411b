"""Publishing job events: the sink port (AMQP and in-memory) and per-job sequence numbers.

Every event of one job run carries an increasing ``seq`` (1, 2, …), the executor's ID and the
run's claimed attempt (when the executor claims runs).
Order: ``state running`` → ``log``… → ``result`` → terminal ``state`` (jobs that never
start — queue timeout, stopped while queued, not runnable — get only the terminal state).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from shoal.broker import Renewal, publish
from shoal.executor.engine import Stream
from shoal.model import JobState
from shoal.names import EVENTS_EXCHANGE
from shoal.wire import JobEvent


class EventSink(Protocol):
    """Where job events go; ``publish`` returns once the event is safely handed over."""

    async def publish(self, event: JobEvent) -> None:
        """Publish one event (confirmed by the broker, for the AMQP sink)."""
        ...


class AmqpEventSink:
    """Events on the ``shoal.events`` topic exchange, key ``job.<owner>.<id>.<kind>``, signed
    with the executor's account as ``user_id`` (checked by the broker; the recorder records
    events of executor accounts only).

    The sink publishes on a channel of its own (:meth:`open`), apart from the one that
    consumes compute deliveries, so that renewing it after a refused confirm
    (``shoal.broker.Renewal``) hands no delivery back."""

    def __init__(
        self,
        exchange: AbstractExchange,
        user: str,
        survive: float = 60.0,
        renew: Renewal | None = None,
    ) -> None:
        self._exchange = exchange
        self._user = user
        self._survive = survive
        self._renew = renew

    @classmethod
    async def open(
        cls, connection: AbstractRobustConnection, user: str, survive: float = 60.0
    ) -> AmqpEventSink:
        """A sink on a new confirmed channel of ``connection``; ``shoal.events`` is declared
        already (``shoal.topology.declare_executor``)."""
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        return cls(exchange, user, survive, Renewal(channel))

    async def publish(self, event: JobEvent) -> None:
        """Publish, riding out a dropped connection for ``survive`` seconds: an event sent
        twice is recorded once (``(job, executor, seq)`` is its key), while a run whose
        result could not be sent would be handed back and run again."""
        await publish(
            self._exchange,
            event.routing_key,
            event,
            survive=self._survive,
            renew=self._renew,
            user_id=self._user,
        )


class MemoryEventSink:
    """Events kept in a list, with a way to wait for one."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._changed = asyncio.Condition()

    async def publish(self, event: JobEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, job_id: str) -> list[JobEvent]:
        """The events of one job, in publish order."""
        return [e for e in self.events if e.job_id == job_id]

    async def wait_for(self, match: Callable[[JobEvent], bool], within: float = 10.0) -> JobEvent:
        """The first event (already published or coming) that ``match`` accepts."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                await self._changed.wait()


class JobEvents:
    """One job run's events with their sequence numbers."""

    def __init__(
        self,
        sink: EventSink,
        job_id: str,
        executor: str,
        owner: str = "",
        attempt: str | None = None,
    ) -> None:
        self._sink = sink
        self.job_id = job_id
        self.executor = executor
        self.owner = owner
        self.attempt = attempt
        self._seq = 0

    async def _send(self, **fields: Any) -> None:
        self._seq += 1
        await self._sink.publish(
            JobEvent(
                job_id=self.job_id,
                owner=self.owner,
                executor=self.executor,
                seq=self._seq,
                attempt=self.attempt,
                **fields,
            )
        )

    async def state(
        self,
        state: JobState,
        *,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        exit_code: int | None = None,
        error: str | None = None,
        lowered: list[str] | None = None,
    ) -> None:
        """A state change (``running``, with the limits the node ``lowered``, or terminal)."""
        await self._send(
            kind="state",
            state=state,
            started_at=started_at,
            ended_at=ended_at,
            exit_code=exit_code,
            error=error,
            lowered=lowered or [],
        )

    async def log(self, stream: Stream, data: str) -> None:
        """A chunk of output."""
        await self._send(kind="log", stream=stream, data=data)

    async def result(self, outputs: dict[str, str], truncated: bool, error: str | None) -> None:
        """The job's outputs."""
        await self._send(kind="result", outputs=outputs, truncated=truncated, error=error)
