"""The sweeper: jobs past their queue or total timeout end ``failed``, executor or not.

Every ``interval`` seconds each requester runs its :attr:`Sweeper.steps` in order; a step
that fails is logged and tried again next time. The first step fails the jobs whose
deadline passed (``shoal.requester.store.deadlines``) and announces each end
(``shoal.requester.announce``): a job still waiting gets "expired in the queue", a job past its
total timeout gets "timed out" and its executor a stop. Several requesters sweep the same
store safely: a job moves to ``failed`` once, and only the requester that moved it
announces it. With a ``compute`` exchange (and the requester's ``holders``) a second step
makes due the compute message of each run whose claim's lease lapsed or was handed back
while its job had not ended (``shoal.requester.store.lapses``): the executor that held it may
have been the only one to get the message, so without a resend no executor would ever run it.
A lapsed run whose holder is alive and within its grace (``shoal.requester.leases``: this
requester just started or came back) is left to its holder's next renewal. A third step
republishes the compute message of each job whose retry or resend is due
(``shoal.requester.store.retries``); two requesters may both publish it, and the executors'
claims run it once; a message published is due again ``resend_every`` seconds later while no
claim takes its job (a lost or skipped copy is not the last). With a ``retention``, a last
step removes the history of jobs that ended longer ago than that
(``shoal.requester.store.retention``), at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from aio_pika.abc import AbstractExchange

from shoal.broker import Renewal, publish
from shoal.topology import compute_queue, job_lane
from shoal.wire import ComputeRequest, utcnow

from .announce import Announcer
from .leases import Holders
from .store import JobStore
from .store.lapses import Lapse

log = structlog.get_logger(__name__)

BATCH = 500
"""Deadlines handled per store transaction."""

PRUNE_EVERY = 60.0
"""Most often, in seconds, that ended jobs past the retention are looked for."""

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
        renew: Renewal | None = None,
        holders: Holders | None = None,
        resend_every: float,
        retention: float = 0.0,
    ) -> None:
        self._store = store
        self._compute = compute
        self._renew = renew
        self._holders = holders
        self._resend_every = resend_every
        self._announcer = announcer
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.steps: list[Step] = [self.expire_timeouts]
        if compute is not None and holders is not None:
            self.steps += [self.resend_lapsed, self.republish_retries]
        self._retention = retention
        self._next_prune = 0.0
        if retention > 0:
            self.steps.append(self.prune_history)
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

    async def resend_lapsed(self) -> None:
        """Make due the compute message of each run whose lease lapsed or was handed back
        while its job had not ended (``shoal.requester.store.lapses``); the next step publishes."""
        while True:
            found = await self._store.lapsed_runs(limit=BATCH)
            marked = await self._store.mark_lapsed(await self._takeable(found))
            for job_id in marked:
                log.info("job.lapsed", job_id=job_id)
            if len(found) < BATCH or not marked:  # the rest are kept for their holders
                return

    async def _takeable(self, found: list[Lapse]) -> list[Lapse]:
        """Those of ``found`` handed back, or whose holder may lose them (:class:`Holders`;
        one question per holder)."""
        assert self._holders is not None
        verdicts: dict[str, bool] = {}
        for lapse in found:
            if lapse.executor and lapse.executor not in verdicts:
                verdicts[lapse.executor] = await self._holders.may_take(lapse.executor, True)
        kept = [lapse.job_id for lapse in found if lapse.executor and not verdicts[lapse.executor]]
        if kept:
            log.debug("jobs.lapse_kept", job_ids=kept)
        return [lapse for lapse in found if not lapse.executor or verdicts[lapse.executor]]

    async def republish_retries(self) -> None:
        """Publish the compute message of each job whose next attempt is due (confirmed),
        then note them sent (due again after ``resend_every`` unless claimed); a publish that
        fails is tried again next sweep."""
        assert self._compute is not None
        while True:
            due = await self._store.due_retries(limit=BATCH)
            for job in due:
                await publish(
                    self._compute,
                    compute_queue(job_lane(job)),
                    ComputeRequest(job=job),
                    renew=self._renew,
                    message_id=job.id,
                )
                log.info("job.retried", job_id=job.id)
            await self._store.retries_sent([job.id for job in due], self._resend_every)
            if len(due) < BATCH:
                return

    async def prune_history(self) -> None:
        """Remove the jobs that ended more than the retention ago, a batch at a time; at most
        once every :data:`PRUNE_EVERY` seconds (or the retention, if shorter)."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + min(PRUNE_EVERY, self._retention)
        before = utcnow() - timedelta(seconds=self._retention)
        while True:
            pruned = await self._store.prune_ended(before, limit=BATCH)
            if pruned:
                log.info("jobs.pruned", count=len(pruned), ended_before=before.isoformat())
            if len(pruned) < BATCH:
                return

    async def close(self) -> None:
        """Stop sweeping (a sweep in progress is cancelled; its commit stands or not)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
