"""``JobStore``: the job store behind a small async interface (SQLite or Postgres).

SQLite is the embedded default for one requester (WAL; writes serialized in-process);
Postgres, chosen by URL, lets several requester replicas share the store: every state
change is a single conditional statement, so replicas never regress a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shoal.errors import NotFoundError, UsageError
from shoal.model import JOB_ID, STATE_ORDER, Job, JobState, submitted_spec
from shoal.wire import ClaimItem, ClaimOp, Heartbeat, JobEvent, utcnow

from . import (
    claims,
    deadlines,
    lapses,
    listing,
    nodes,
    reads,
    retention,
    retries,
    schema,
    writes,
)
from .blobs import BlobStore, DatabaseBlobStore
from .claims import Claimed
from .deadlines import Expired
from .dialect import insert_for, tune_sqlite
from .lapses import Lapse
from .listing import JobFilter, Scope
from .writes import Limits, NewJob


async def _insert(conn: AsyncConnection, items: Sequence[NewJob]) -> dict[str, JobState]:
    """Insert submissions (idempotent) and the deadlines of the jobs still pending."""
    states = await writes.insert_jobs(conn, items)
    fresh = [item.runnable for item in items if states[item.runnable.id] is JobState.PENDING]
    await deadlines.schedule(conn, fresh, datetime.now(UTC))
    return states


async def _create_schema(engine: AsyncEngine, attempts: int = 3) -> None:
    """Create the tables that are missing. Replicas starting together can race between
    "missing?" and "create": the loser fails, tries again and finds the tables there."""
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(schema.metadata.create_all)
                await conn.run_sync(schema.upgrade)
            return
        except DBAPIError:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.1 * attempt)


class JobStore:
    """Jobs, executions, logs and outputs; open with :meth:`open`, end with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, limits: Limits) -> None:
        self._engine = engine
        self.limits = limits
        self._sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, limits: Limits) -> JobStore:
        """Connect and create the schema if needed."""
        parsed = make_url(url)
        options: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            options = {"pool_size": 10, "max_overflow": 10, "pool_pre_ping": True}
        engine = create_async_engine(url, **options)
        if engine.dialect.name == "sqlite":
            tune_sqlite(engine)
        await _create_schema(engine)
        return cls(engine, limits)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def describe_url(self) -> str:
        """The database, password hidden: ``sqlite:///…/jobs.sqlite3``, ``postgresql://u@h/db``."""
        return self._engine.url.render_as_string(hide_password=True)

    async def store_id(self) -> str:
        """This store's ID: made by the first requester that opened it, the same for every
        requester sharing it."""
        table = schema.store_meta
        async with self._write() as conn:
            insert = insert_for(conn)
            await conn.execute(
                insert(table)
                .values(key="store_id", value=f"s-{uuid.uuid4().hex}")
                .on_conflict_do_nothing()
            )
            value = await conn.scalar(select(table.c.value).where(table.c.key == "store_id"))
        return str(value)

    def blobs(self) -> BlobStore:
        """The blob store in this database (``shoal.requester.store.blobs``)."""
        return DatabaseBlobStore(self._engine, self._write)

    async def close(self) -> None:
        """Release every connection."""
        await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._sqlite:
            async with self._write_lock, self._engine.begin() as conn:
                yield conn
        else:
            async with self._engine.begin() as conn:
                yield conn

    # writes ---------------------------------------------------------------------------

    async def add_jobs(self, items: Sequence[NewJob]) -> dict[str, JobState]:
        """Record submissions (idempotent); the current state of each runnable job."""
        async with self._write() as conn:
            return await _insert(conn, items)

    async def write_round(
        self, new: Sequence[NewJob], queued: Sequence[str]
    ) -> dict[str, JobState]:
        """One transaction: mark ``queued`` jobs (see :meth:`mark_queued`), then add ``new``
        ones (see :meth:`add_jobs`). The submission pipeline's group commit."""
        async with self._write() as conn:
            await writes.mark_queued(conn, queued)
            return await _insert(conn, new) if new else {}

    async def mark_queued(self, job_ids: Sequence[str]) -> list[str]:
        """Pending jobs whose compute message was confirmed become ``queued``."""
        async with self._write() as conn:
            return await writes.advance_state(conn, job_ids, JobState.QUEUED)

    async def stop_if_waiting(self, job_id: str, reason: str) -> bool:
        """Mark a job that has not started ``stopped``; ``False`` if it already runs or ended,
        or a live execution claim holds it. Durable: its claims are answered ``stopped``."""
        async with self._write() as conn:
            state = await claims.job_state(conn, job_id)
            if state is None or STATE_ORDER[state] >= STATE_ORDER[JobState.RUNNING]:
                return False
            if not await claims.hold_for_stop(conn, job_id, utcnow()):
                return False
            moved = await writes.advance_state(
                conn,
                [job_id],
                JobState.STOPPED,
                error=reason,
                below_rank=STATE_ORDER[JobState.RUNNING],
            )
        return bool(moved)

    async def record_events(
        self, events: Sequence[JobEvent], accounts: Sequence[str] | None = None
    ) -> list[bool]:
        """Write job events in one transaction (each is idempotent and order-safe); whether
        each was written. An event of an attempt that no longer holds its job's claim is
        refused (``store.claims``). With ``accounts`` (the broker account that published each
        event), an event is written only when its account runs that execution
        (:func:`writes.claim_run`)."""
        written = []
        async with self._write() as conn:
            held = await claims.holders(conn, [e.job_id for e in events if e.attempt])
            attempts = await retries.current(conn, [e.job_id for e in events])
            for index, event in enumerate(events):
                stale = event.attempt and held.get(event.job_id, event.attempt) != event.attempt
                number = attempts.get(event.job_id, 1)
                run = event.model_copy(
                    update={"executor": retries.run_key(event.executor or "", number)}
                )
                if stale or (
                    accounts is not None and not await writes.claim_run(conn, run, accounts[index])
                ):
                    written.append(False)
                    continue
                retried = await self._record(conn, run, number)
                if retried:
                    held[event.job_id] = retries.placeholder(number + 1)
                    attempts[event.job_id] = number + 1
                written.append(True)
        return written

    async def _record(self, conn: AsyncConnection, event: JobEvent, attempt: int) -> bool:
        """Write ``event`` of attempt number ``attempt``; True when its failure is retried
        (``store.retries``): the run is recorded, the job goes back to the queue. Only the
        runs of claimed attempts are retried (an unclaimed event may be a redelivery)."""
        claimed = bool(event.executor and event.attempt)  # attempts are told apart by claims
        if event.kind != "state" or event.state is not JobState.FAILED or not claimed:
            await writes.record_event(conn, event, self.limits)
            return False
        now = utcnow()
        decision = await retries.decide(conn, event, attempt, now)
        if decision.retry_at is not None and await retries.requeue(
            conn, event.job_id, decision.next_attempt, decision.retry_at, now
        ):
            await writes.record_event(conn, event, self.limits, advance_job=False)
            return True
        await writes.record_event(conn, decision.event, self.limits)
        return False

    async def claim_runs(
        self, op: ClaimOp, executor: str, items: Sequence[ClaimItem], lease: float
    ) -> list[Claimed]:
        """Claim, renew or release runs in one transaction (``store.claims``)."""
        now = utcnow()
        verdicts: list[Claimed] = []
        async with self._write() as conn:
            for item in items:
                if op == "claim":
                    verdicts.append(
                        await claims.claim(conn, item.job_id, item.attempt, executor, lease, now)
                    )
                    continue
                if op == "renew":
                    held = await claims.renew(conn, item.job_id, item.attempt, lease, now)
                else:
                    held = await claims.release(conn, item.job_id, item.attempt, now)
                verdicts.append(Claimed("granted" if held else "expired"))
        return verdicts

    async def take_over(
        self,
        job_id: str,
        attempt: str,
        executor: str,
        old_attempt: str,
        lease: float,
        *,
        lapsed: bool = False,
    ) -> bool:
        """Give a run whose holder is gone (or, ``lapsed``, whose lease still lapsed) to
        ``attempt``; False if the claim changed (``store.claims.take_over``)."""
        now = utcnow()
        async with self._write() as conn:
            ends = now + timedelta(seconds=lease)
            return await claims.take_over(
                conn, job_id, attempt, executor, old_attempt, ends, now, lapsed
            )

    async def expire_due(self, now: datetime | None = None, limit: int = 500) -> list[Expired]:
        """Fail jobs past their queue or total timeout by ``now`` (default: now); see
        ``deadlines.expire_due``."""
        async with self._write() as conn:
            return await deadlines.expire_due(conn, now or datetime.now(UTC), limit)

    async def retry_lost(self, job_id: str, reason: str) -> str | None:
        """A job whose compute message was dead-lettered: requeued when its policy retries
        ``lost`` runs (``None``), else the reason to fail it with (``store.retries``)."""
        async with self._write() as conn:
            return await retries.retry_lost(conn, job_id, reason, utcnow())

    async def last_error(self, job_id: str, ignoring: str = "") -> str | None:
        """The error of the job's last run that has one (``reads.last_error``)."""
        async with self._engine.connect() as conn:
            return await reads.last_error(conn, job_id, ignoring)

    async def due_retries(self, limit: int = 500, now: datetime | None = None) -> list[Job]:
        """The jobs whose next attempt is due by ``now`` (default: now; ``store.retries``)."""
        async with self._engine.connect() as conn:
            return await retries.due(conn, now or utcnow(), limit)

    async def lapsed_runs(self, limit: int = 500, now: datetime | None = None) -> list[Lapse]:
        """The runs whose lease ended by ``now`` (default: now) while their jobs did not, not
        yet marked (``store.lapses``)."""
        async with self._engine.connect() as conn:
            return await lapses.lapsed(conn, now or utcnow(), limit)

    async def mark_lapsed(self, found: Sequence[Lapse], now: datetime | None = None) -> list[str]:
        """Make due now the compute messages of the runs of ``found`` whose lease is still
        ended by ``now`` (default: now; ``store.lapses``); the job IDs marked."""
        if not found:
            return []
        async with self._write() as conn:
            return await lapses.mark_lapsed(conn, found, now or utcnow())

    async def prune_ended(self, before: datetime, limit: int = 500) -> list[str]:
        """Remove the history of up to ``limit`` jobs that ended before ``before``
        (``store.retention``); the IDs of the ended jobs this call removed."""
        async with self._write() as conn:
            return await retention.prune_ended(conn, before, limit)

    async def retries_sent(self, job_ids: Sequence[str], again_in: float) -> None:
        """The compute messages of ``job_ids``' next attempts were published; each is due
        again ``again_in`` seconds later unless a claim takes its job (``store.retries``)."""
        now = utcnow()
        async with self._write() as conn:
            await retries.sent(conn, job_ids, now, now + timedelta(seconds=again_in))

    async def fail_unless_ended(
        self, job_id: str, reason: str, *, before: JobState = JobState.COMPLETED
    ) -> JobState | None:
        """Mark a job ``failed`` unless it reached ``before`` (default: unless it ended); the
        state it left, ``None`` if it did not move (or is unknown)."""
        async with self._write() as conn:
            row = await reads.job_row(conn, job_id)
            moved = await writes.advance_state(
                conn, [job_id], JobState.FAILED, error=reason, below_rank=STATE_ORDER[before]
            )
        return JobState(row.state) if moved and row is not None else None

    async def record_heartbeat(self, heartbeat: Heartbeat) -> bool:
        """Keep a service's latest heartbeat (``store.nodes``); whether it was kept."""
        async with self._write() as conn:
            return await nodes.record(conn, heartbeat, utcnow())

    async def forget_node(self, node_id: str) -> None:
        """Drop a service from the view, and every heartbeat that expired."""
        async with self._write() as conn:
            await nodes.forget(conn, node_id)
            await nodes.prune(conn, utcnow())

    async def prune_nodes(self, now: datetime | None = None) -> int:
        """Delete the heartbeats that expired (by ``now``); how many."""
        async with self._write() as conn:
            return await nodes.prune(conn, now or utcnow())

    # reads ----------------------------------------------------------------------------

    async def alive_nodes(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """The services whose heartbeat has not expired by ``now`` (``store.nodes.alive``)."""
        async with self._engine.connect() as conn:
            return await nodes.alive(conn, now or utcnow())

    async def fully_recorded(self, job_ids: Sequence[str]) -> list[JobEvent]:
        """A ``recorded`` event for each job among ``job_ids`` that is terminal with every
        event of its ended runs in the store."""
        async with self._engine.connect() as conn:
            rows = await reads.fully_recorded(conn, list(dict.fromkeys(job_ids)))
        return [
            JobEvent(
                job_id=row.id,
                owner=row.owner,
                kind="recorded",
                state=JobState(row.state),
                exit_code=row.exit_code,
            )
            for row in rows
        ]

    async def submitted_specs(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What was submitted (:func:`shoal.model.submitted_spec`) for each of ``job_ids``
        (submitted IDs) that is stored."""
        async with self._engine.connect() as conn:
            stored = await reads.specs(conn, job_ids)
        return {
            job_id: submitted_spec(Job.model_validate_json(spec)) for job_id, spec in stored.items()
        }

    async def resolve(self, job_id: str) -> dict[str, Any]:
        """The runnable job's summary for ``job_id`` (an original leads to its translation)."""
        async with self._engine.connect() as conn:
            row = await reads.resolve(conn, job_id)
        if row is None:
            raise NotFoundError(f"no job {job_id!r}")
        return reads.summary(row)

    async def list_jobs(
        self,
        *,
        state: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int,
        scope: Scope = None,
    ) -> list[dict[str, Any]]:
        """The first ``limit`` jobs newest first, filtered by state and labels (see
        :meth:`page`)."""
        wanted = JobFilter(states=(state,) if state else (), labels=labels or {}, scope=scope)
        jobs: list[dict[str, Any]] = (await self.page(wanted, limit))["jobs"]
        return jobs

    async def page(self, wanted: JobFilter, limit: int, after: str | None = None) -> dict[str, Any]:
        """A page of ``limit`` jobs matching ``wanted``, newest first, after the job
        ``after`` (an ID in ``wanted.scope``; ``NotFoundError`` otherwise), with the counts
        and the next cursor (``listing.page``)."""
        async with self._engine.connect() as conn:
            cursor = None
            if after is not None:
                cursor = await listing.visible_row(conn, after, wanted.scope)
                if cursor is None:
                    raise NotFoundError(f"no job {after!r} to list after")
            return await listing.page(conn, wanted, limit, cursor)

    async def counts(self, wanted: JobFilter) -> dict[str, Any]:
        """Jobs matching ``wanted`` counted by state and by job type (``listing.counts``)."""
        async with self._engine.connect() as conn:
            return await listing.counts(conn, wanted)

    async def match(self, text: str, scope: Scope = None) -> str:
        """The runnable job's ID for ``text``: a job ID, or a prefix of at least
        :data:`listing.MIN_PREFIX` characters after ``j-`` (which may be left out) unique
        among the jobs in ``scope``. ``NotFoundError`` when none matches, ``UsageError``
        when the prefix is too short or names several jobs."""
        prefix = listing.id_prefix(text)
        if JOB_ID.fullmatch(prefix):
            async with self._engine.connect() as conn:
                row = await listing.visible_row(conn, prefix, scope)
            if row is None:
                raise NotFoundError(f"no job {text!r}")
            return str(row.translated_id or row.id)
        async with self._engine.connect() as conn:
            found = await listing.by_prefix(conn, prefix, scope, most=3)
        if not found:
            raise NotFoundError(f"no job matches {text!r}")
        if len(found) > 1:
            more = " and more" if len(found) > 2 else ""
            raise UsageError(
                f"job ID prefix {text!r} is ambiguous: it matches {found[0]}, {found[1]}{more};"
                " give more characters"
            )
        return found[0]

    async def describe(self, job_id: str) -> dict[str, Any]:
        """The full record of a job (``NotFoundError`` if unknown)."""
        async with self._engine.connect() as conn:
            row = await reads.resolve(conn, job_id)
            if row is None:
                raise NotFoundError(f"no job {job_id!r}")
            return await reads.describe(conn, row)

    async def logs(self, job_id: str) -> dict[str, Any]:
        """A job's kept log chunks in ``seq`` order."""
        job = await self.resolve(job_id)
        async with self._engine.connect() as conn:
            return await reads.logs(conn, job["id"])

    async def outputs(self, job_id: str) -> dict[str, Any]:
        """A job's state, result archives (base64-encoded) and what was left out of them."""
        async with self._engine.connect() as conn:
            row = await reads.resolve(conn, job_id)
            if row is None:
                raise NotFoundError(f"no job {job_id!r}")
            return await reads.outputs(conn, row)
