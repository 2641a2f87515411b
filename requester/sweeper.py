"""The sweeper: jobs past their queue or total timeout end ``failed``, executor or not.

Every ``interval`` seconds each requester runs its :attr:`Sweeper.steps` in order; a step
that fails is logged and tried again next time. The one step today fails the jobs whose
deadline passed (``requester.store.deadlines``) and announces each end
(``requester.announce``): a job still waiting gets "expired in the queue", a job past its
total timeout gets "timed out" and its executor a stop. Several requesters sweep the same
store safely: a job moves to ``failed`` once, and only the requester that moved it
announces it. With a ``compute`` exchange a second step republishes the compute message of
each job whose retry is due (``requester.store.retries``); two requesters may both publish
it, and the executors' claims run it once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from aio_pika.abc import AbstractExchange

from shoal.broker import publish
from shoal.topology import COMPUTE_QUEUE
from shoal.wire import ComputeRequest

from .announce import Announcer
from .store import JobStore

log = structlog.get_logger(__name__)

BATCH = 500
"""Deadlines handled per store transaction."""

Step = Callable[[], Awaitable[None]]


class Sweeper:
    """:meth:`start`, then :meth:`close`."""

    def __init__(
        self,
        store: JobStore,
        announcer: Announcer,
        *,
        interval: float,
        compute: AbstractExchange | None = None,
    ) -> None:
        self._store = store
        self._compute = compute
        self._announcer = announcer
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.steps: list[Step] = [self.expire_timeouts]
        if compute is not None:
            self.steps.append(self.republish_retries)
        """Run in order on every sweep."""

    def start(self) -> None:
        """Sweep now and every ``interval`` seconds."""
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            for step in self.steps:
                try:
                    await step()
                except Exception as error:
                    log.warning(
                        "sweep.failed",
                        step=getattr(step, "__name__", repr(step)),
                        error=f"{type(error).__name__}: {error}",
                    )
            await asyncio.sleep(self._interval)

    async def expire_timeouts(self) -> None:
        """Fail the jobs past a deadline, a batch at a time, and announce each."""
        while True:
            expired = await self._store.expire_due(limit=BATCH)
            for job in expired:
                log.info("job.expired", job_id=job.job_id, timeout=job.kind, was=job.state)
                await self._announcer.failed(job.job_id, job.owner, job.reason)
            if len(expired) < BATCH:
                return

    async def republish_retries(self) -> None:
        """Publish the compute message of each job whose next attempt is due (confirmed),
        then note them sent; a publish that fails is tried again next sweep."""
        assert self._compute is not None
        while True:
            due = await self._store.due_retries(limit=BATCH)
            for job in due:
                await publish(
                    self._compute, COMPUTE_QUEUE, ComputeRequest(job=job), message_id=job.id
                )
                log.info("job.retried", job_id=job.id)
            await self._store.retries_sent([job.id for job in due])
            if len(due) < BATCH:
                return

    async def close(self) -> None:
        """Stop sweeping (a sweep in progress is cancelled; its commit stands or not)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
