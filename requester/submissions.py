"""The submission pipeline: parse → translate → store → publish → reply → settle, in rounds.

Deliveries from ``shoal.submit`` are taken a round at a time (whatever arrived meanwhile, up
to ``max_round``) and every step serves the whole round: one store transaction, the compute
messages and then the replies and acks each in one socket write (``shoal.requester.framebatch``).
A lone submission is a round of one, handled at once; under load a round is a prefetch
window. Two rounds run at once, so one's CPU work overlaps the other's waits.

Exactly-once *effect* on top of at-least-once delivery:

- the runnable job's ID is a function of the submission (``derived_job_id`` of the submitted
  ID, which itself is derived from ``--idempotency-key`` when there is one), so a redelivered
  submission names the same job; submissions naming one job are never handled at once: in a
  round the later ones follow the first, across rounds a round waits for the other;
- the job is stored ``pending`` before its compute message is published, and marked
  ``queued`` once the broker confirmed it; a redelivery that finds it past ``pending`` only
  replies. The window left — a crash after the confirm and before the ``queued`` commit —
  can publish the compute message twice, under the same job ID and ``message_id``: the store
  still holds one job, and executors skip a job ID they already run;
- a submission is acked only after the store commit, the confirmed publish and its reply.

Every delivery is settled: acked, dead-lettered (a bad submission nobody waits for), or
requeued after a back-off when a step failed (the queue's delivery limit bounds that).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiormq
import structlog
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage

from shoal import limits
from shoal.broker import Renewal
from shoal.errors import IdempotencyConflictError, InvalidJobError, ProtocolError, ShoalError
from shoal.metrics import RECEIVED, ROUND_SIZE, SUBMISSIONS
from shoal.model import JobState, derived_job_id, submitted_spec
from shoal.topology import SUBMIT_QUEUE, compute_queue, job_lane
from shoal.wire import (
    SUBMISSION_BATCH,
    Submission,
    SubmitBatchReply,
    SubmitReply,
    WireError,
    compute_body,
    decode,
    encode,
    read_batch,
    utcnow,
)

from . import delivery
from .access import Access
from .admission import DEFAULT_ADMISSION, Admission, ImageCheck
from .batching import Batcher
from .framebatch import FrameBatch, RefusedError, confirmed, properties
from .store import JobStore, NewJob
from .translate import TranslatorRegistry, translate_job

log = structlog.get_logger(__name__)


def idempotent_id(owner: str, key: str) -> str:
    """The submitted job's ID for an ``--idempotency-key``: same owner and key, same job."""
    return derived_job_id(f"idem:{owner}:{key}")


def prepare(
    body: bytes,
    registry: TranslatorRegistry,
    owner: str | None,
    access: Access,
    admission: Admission = DEFAULT_ADMISSION,
) -> NewJob:
    """Parse and translate a submission of ``owner`` (the broker-checked ``user_id``);
    raises ``ShoalError`` for a bad one. A body over ``shoal.limits.MAX_SUBMISSION_BYTES`` is
    refused unparsed; a parsed job over the inline or ``meta`` limits, or asking for what the
    cluster cannot give (``admission``), is refused before translation."""
    limits.check_body(body, limits.MAX_SUBMISSION_BYTES, "submission")
    return accept(decode(body, Submission), registry, owner, access, admission)


def accept(
    submission: Submission,
    registry: TranslatorRegistry,
    owner: str | None,
    access: Access,
    admission: Admission = DEFAULT_ADMISSION,
) -> NewJob:
    """:func:`prepare` for a submission already parsed (one of a batch)."""
    limits.check_job(submission.job)
    admission.check(submission.job)
    caller = access.caller(owner)
    access.check_namespace(caller, submission.job.namespace)
    update: dict[str, object] = {"state": JobState.PENDING, "owner": caller}
    if submission.idempotency_key:
        update["id"] = idempotent_id(caller, submission.idempotency_key)
    translation = translate_job(submission.job, registry, update)
    return NewJob(translation.original, translation.runnable, submission.idempotency_key)


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off of transient failures (the queue's delivery limit bounds the attempts)."""

    base_delay: float = 0.2
    max_delay: float = 5.0


@dataclass(eq=False)
class _Request:
    """One delivery: a submission, or a batch of them (``SUBMISSION_BATCH``), answered and
    settled once, when every job of it is done (compared by identity)."""

    message: DeliveredMessage
    answers: list[SubmitReply | None]
    """Each job's answer, in order (``None`` until it has one)."""
    batch: bool = False
    refused: ShoalError | None = None
    """Why the whole delivery was refused (unreadable): it has no jobs."""
    retry: bool = False
    """A job of it met a transient failure: the whole delivery goes back, later (the jobs
    it already queued are found again then, and only answered)."""

    def reply(self) -> bytes:
        """The answer to send to ``reply_to``."""
        if not self.batch:
            single = self.answers[0] if self.answers else None
            if self.refused is not None:
                single = SubmitReply(error=WireError.of(self.refused))
            assert single is not None
            return encode(single)
        if self.refused is not None:
            return encode(SubmitBatchReply(error=WireError.of(self.refused)))
        return encode(SubmitBatchReply(replies=[a for a in self.answers if a is not None]))

    @property
    def refusals(self) -> bool:
        """Whether anything of it was refused."""
        return self.refused is not None or any(a and a.error for a in self.answers)


@dataclass(eq=False)
class _Item:
    """One accepted job of a delivery in a round, and how it ends (compared by identity)."""

    request: _Request
    index: int
    job: NewJob
    leader: bool = True
    failed: bool = False

    @property
    def message(self) -> DeliveredMessage:
        return self.request.message

    @property
    def job_id(self) -> str:
        return self.job.runnable.id


def _blobs(item: _Item) -> dict[str, int]:
    """sha256 → declared size of the blobs ``item``'s runnable job names."""
    return {
        str(entry.source.params["sha256"]): int(entry.source.params["size"])
        for entry in item.job.runnable.task.inputs
        if entry.source.type == "blob"
    }


def _conflict(item: _Item) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"idempotency key {item.job.idempotency_key!r} already names job {item.job_id}, "
        "submitted with a different spec; resubmit that spec to get the job, or use a new key"
    )


@dataclass(frozen=True)
class _StoreOp:
    """A round's store write: jobs to add, or job IDs to mark queued."""

    add: Sequence[NewJob] = ()
    queued: Sequence[str] = ()


class SubmissionPipeline:
    """Consumes ``shoal.submit`` on ``channel``, which also carries the confirmed compute
    publishes; replies go out on ``replies``, a channel without confirms (see
    ``shoal.requester.replies``). :meth:`start`, then :meth:`cancel` and :meth:`drain`."""

    def __init__(
        self,
        store: JobStore,
        channel: AbstractRobustChannel,
        replies: AbstractRobustChannel,
        registry: TranslatorRegistry,
        retry: RetryPolicy,
        *,
        access: Access,
        admission: Admission = DEFAULT_ADMISSION,
        images: ImageCheck | None = None,
        queue: str = SUBMIT_QUEUE,
        max_round: int = 256,
        max_rounds: int = 2,
    ) -> None:
        self._store = store
        self._channel = channel
        self._replies = replies
        self._registry = registry
        self._retry = retry
        self._access = access
        self._admission = admission
        self._images = images
        self._queue = queue
        self._max_round = max_round
        self._slots = asyncio.Semaphore(max_rounds)
        self._pending: list[DeliveredMessage] = []
        self._pump: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._later: set[asyncio.Task[None]] = set()
        self._busy: dict[str, asyncio.Future[None]] = {}
        self._writes: Batcher[_StoreOp, dict[str, JobState]] = Batcher(self._write)
        self._renew = Renewal(channel)
        self._consumer: tuple[aiormq.Channel, str] | None = None
        self._stopping = False

    # consuming ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Consume, and consume again whenever the robust channel is reopened."""
        await self._consume()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _consume(self) -> None:
        raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        ok = await raw.basic_consume(self._queue, self._on_delivery)
        assert ok.consumer_tag is not None
        self._consumer = (raw, ok.consumer_tag)

    def consuming(self) -> bool:
        """True while the broker delivers submissions here: the consumer is registered on
        an open channel (after a reconnect, once it consumed again)."""
        if self._consumer is None or self._stopping:
            return False
        raw, tag = self._consumer
        return not raw.is_closed and tag in raw.consumers

    async def _on_reopen(self, _channel: Any) -> None:
        if not self._stopping:
            await self._consume()

    async def _on_delivery(self, message: DeliveredMessage) -> None:
        self._pending.append(message)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._pump_rounds())

    async def _pump_rounds(self) -> None:
        await asyncio.sleep(0)  # deliveries read from the same socket chunk join this round
        while self._pending and not self._stopping:
            await self._slots.acquire()
            if self._stopping:
                self._slots.release()
                return
            batch = self._pending[: self._max_round]
            del self._pending[: self._max_round]
            task = asyncio.create_task(self._round(batch))
            self._rounds.add(task)
            task.add_done_callback(self._round_done)

    def _round_done(self, task: asyncio.Task[None]) -> None:
        self._rounds.discard(task)
        self._slots.release()
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("submission.round_failed", error=f"{type(error).__name__}: {error}")

    async def cancel(self) -> None:
        """Stop taking deliveries (those not started yet go back when the channel closes)."""
        self._stopping = True
        self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._consumer is not None:
            raw, tag = self._consumer
            with contextlib.suppress(*delivery.SETTLE_ERRORS, asyncio.TimeoutError):
                await raw.basic_cancel(tag, timeout=5)
        self._pending.clear()

    async def drain(self, grace: float) -> int:
        """Let the rounds in progress finish within ``grace`` seconds, then cancel the rest;
        retries still waiting out their back-off are cancelled (their deliveries go back to
        the queue when the channel closes). Returns how many rounds and retries were cut."""
        if self._pump is not None:
            self._pump.cancel()
        if self._rounds:
            await asyncio.wait(set(self._rounds), timeout=grace)
        cut = [*self._rounds, *self._later]
        for task in cut:
            task.cancel()
        if cut:
            await asyncio.wait(cut, timeout=1.0)
        await self._writes.close()
        return len(cut)

    # a round ----------------------------------------------------------------------------

    async def _round(self, messages: list[DeliveredMessage]) -> None:
        requests: list[_Request] = []
        items: list[_Item] = []
        for message in messages:
            request, read = self._read(message)
            requests.append(request)
            items += read
        received = sum(len(request.answers) or 1 for request in requests)
        RECEIVED.inc(received)
        ROUND_SIZE.observe(received)
        if self._images is not None:
            items = await self._with_images(items)
        items = await self._with_blobs(items)
        if items:
            ids = list(dict.fromkeys(item.job_id for item in items))
            while waits := {self._busy[job_id] for job_id in ids if job_id in self._busy}:
                await asyncio.wait(waits)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._busy.update(dict.fromkeys(ids, done))
            try:
                items = await self._without_conflicts(items)
                await self._enqueue(items)
            finally:
                for job_id in ids:
                    del self._busy[job_id]
                done.set_result(None)
        await self._finish(requests, items)

    def _read(self, message: DeliveredMessage) -> tuple[_Request, list[_Item]]:
        """The delivery's request and its jobs that parsed and translated (the others are
        refused in the request's answers)."""
        owner = message.header.properties.user_id
        batch = message.header.properties.message_type == SUBMISSION_BATCH
        try:
            if not batch:
                job = prepare(message.body, self._registry, owner, self._access, self._admission)
                request = _Request(message, [None])
                return request, [_Item(request, 0, job)]
            limits.check_body(message.body, limits.MAX_SUBMISSION_BYTES, "submission batch")
            submissions = read_batch(message.body)
        except ShoalError as error:
            return self._refused_whole(message, batch, error), []
        except Exception as error:  # a bug must not leave the delivery unsettled
            log.exception("submission.unreadable")
            reason = f"the requester could not read this submission: {type(error).__name__}"
            return self._refused_whole(message, batch, ProtocolError(reason)), []
        request = _Request(message, [None] * len(submissions), batch=True)
        items = []
        for index, submission in enumerate(submissions):
            try:
                if isinstance(submission, ShoalError):
                    raise submission
                job = accept(submission, self._registry, owner, self._access, self._admission)
                items.append(_Item(request, index, job))
            except ShoalError as error:
                self._refuse(request, index, error)
            except Exception as error:
                log.exception("submission.unreadable")
                reason = f"the requester could not read this submission: {type(error).__name__}"
                self._refuse(request, index, ProtocolError(reason))
        return request, items

    def _refused_whole(self, message: DeliveredMessage, batch: bool, error: ShoalError) -> _Request:
        self._log_refusal(error, message)
        return _Request(message, [], batch=batch, refused=error)

    def _refuse(self, request: _Request, index: int, error: ShoalError) -> None:
        """Answer one job of ``request`` with ``error``."""
        self._log_refusal(error, request.message)
        request.answers[index] = SubmitReply(error=WireError.of(error))

    def _log_refusal(self, error: ShoalError, message: DeliveredMessage) -> None:
        SUBMISSIONS.labels("refused", type(error).__name__).inc()
        log.warning(
            "submission.refused",
            error_type=type(error).__name__,
            error=error.message,
            reply_to=message.header.properties.reply_to,
        )

    async def _with_images(self, items: list[_Item]) -> list[_Item]:
        """The items whose runtime image a live executor holds (``ImageCheck``); the others
        are refused."""
        assert self._images is not None
        kept = []
        for item in items:
            error = await self._images.refusal(item.job.runnable)
            if error is None:
                kept.append(item)
            else:
                self._refuse(item.request, item.index, error)
        return kept

    async def _with_blobs(self, items: list[_Item]) -> list[_Item]:
        """Refuse the items naming a blob (``shoal.blobs``) the store does not hold, or with
        another size than the one held (``InvalidJobError``); one query for the round."""
        wanted = {item_id: _blobs(item) for item_id, item in enumerate(items)}
        hashes = sorted({sha for named in wanted.values() for sha in named})
        if not hashes:
            return items
        try:
            held = await self._store.blobs().sizes(hashes)
        except Exception as error:
            self._fail([item for i, item in enumerate(items) if wanted[i]], "store", error)
            return [item for i, item in enumerate(items) if not wanted[i]]
        kept: list[_Item] = []
        for i, item in enumerate(items):
            bad = [sha for sha, size in wanted[i].items() if held.get(sha) != size]
            if bad:
                reason = "is not held by the requester (upload it with blob-put first)"
                if bad[0] in held:
                    reason = f"holds {held[bad[0]]} bytes, not {wanted[i][bad[0]]}"
                refusal = InvalidJobError(f"blob sha256:{bad[0]} {reason}")
                self._refuse(item.request, item.index, refusal)
            else:
                kept.append(item)
        return kept

    async def _without_conflicts(self, items: list[_Item]) -> list[_Item]:
        """Refuse the items whose idempotency key names a job of another spec, stored or
        first in this round (``IdempotencyConflictError``); the rest go on. Rounds naming one
        job run one after the other, so a stored first submission is always seen (by this
        requester: two different ones racing on two replicas may both get the first's job)."""
        keyed = [item for item in items if item.job.idempotency_key]
        if not keyed:
            return items
        try:
            firsts = await self._store.submitted_specs([item.job.original.id for item in keyed])
        except Exception as error:
            self._fail(keyed, "store", error)
            return [item for item in items if not item.job.idempotency_key]
        gone: set[int] = set()
        for item in keyed:
            spec = submitted_spec(item.job.original)
            if firsts.setdefault(item.job.original.id, spec) != spec:
                self._refuse(item.request, item.index, _conflict(item))
                gone.add(id(item))
        return [item for item in items if id(item) not in gone]

    async def _enqueue(self, items: list[_Item]) -> None:
        """Store the round's jobs, publish those new to the compute queue, mark them queued;
        marks each item that failed (to be retried)."""
        leaders: dict[str, _Item] = {}
        for item in items:
            item.leader = leaders.setdefault(item.job_id, item) is item
        try:
            add = _StoreOp(add=[item.job for item in leaders.values()])
            states = await self._writes.submit(add)
        except Exception as error:
            self._fail(items, "store", error)
            return
        fresh = []
        for item in leaders.values():
            if states[item.job_id] is JobState.PENDING:
                fresh.append(item)
            else:
                log.info("submission.duplicate", job_id=item.job_id, state=states[item.job_id])
        if fresh:
            published = await self._publish(fresh)
            try:
                await self._writes.submit(_StoreOp(queued=[item.job_id for item in published]))
            except Exception as error:
                self._fail(published, "store", error)
        for item in items:
            if not item.leader:
                item.failed = leaders[item.job_id].failed

    async def _publish(self, items: list[_Item]) -> list[_Item]:
        """Publish the compute messages in one write; the items the broker confirmed."""
        try:
            raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            batch = FrameBatch(raw)
            now = utcnow()
            futures = [
                batch.publish(
                    compute_queue(job_lane(item.job.runnable)),
                    compute_body(item.job.runnable_json, now),
                    properties(message_id=item.job_id),
                    mandatory=True,
                )
                for item in items
            ]
            await batch.flush()
        except Exception as error:
            self._fail(items, "publish", error)
            return []
        published = []
        outcomes = await confirmed(futures)
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome is None:
                published.append(item)
            else:
                self._fail([item], "publish", outcome)
        if any(isinstance(outcome, RefusedError) for outcome in outcomes):
            await self._renew()  # its deliveries go back: a later round answers them
        return published

    def _fail(self, items: Sequence[_Item], step: str, error: Exception) -> None:
        """``items`` met a transient failure at ``step``: their deliveries go back later."""
        for item in items:
            item.failed = True
            item.request.retry = True
            log.warning(
                "submission.retry",
                step=step,
                job_id=item.job_id,
                original_id=item.job.original.id,
                error=f"{type(error).__name__}: {error}",
                redelivered=item.message.redelivered,
            )

    async def _finish(self, requests: list[_Request], items: list[_Item]) -> None:
        """Answer every request of the round whose jobs are all done (in one write), then
        ack them, or dead-letter a refused one nobody waits for; requeue the others later."""
        for item in items:
            if item.failed:  # a follower fails with its leader
                item.request.retry = True
        accepted = [item for item in items if not item.request.retry]
        for item in accepted:
            item.request.answers[item.index] = SubmitReply(
                job_id=item.job_id, original_id=item.job.original.id
            )
        answered: list[_Request] = []
        for request in requests:
            if request.retry:
                self._retry_later(request.message)
            elif request.message.header.properties.reply_to:
                answered.append(request)
            elif request.refused is not None or (request.refusals and not request.batch):
                await delivery.dead_letter(request.message)
            else:
                answered.append(request)
        if (error := await self._answer(answered)) is not None:
            log.warning("submission.reply_failed", error=f"{type(error).__name__}: {error}")
            for request in answered:
                self._retry_later(request.message)
            return
        SUBMISSIONS.labels("accepted", "").inc(len(accepted))
        for item in accepted:
            log.info(
                "submission.accepted",
                job_id=item.job_id,
                original_id=item.job.original.id,
                job_type=item.job.original.engine_type,
            )

    async def _answer(self, requests: list[_Request]) -> Exception | None:
        """Answer each request on its ``reply_to`` (if any) in one write, not confirmed, then
        ack them all; what kept the replies from going out (nothing is acked then)."""
        try:
            raw = cast(aiormq.Channel, await self._replies.get_underlay_channel())
            batch = FrameBatch(raw)
            for request in requests:
                props = request.message.header.properties
                if props.reply_to:
                    reply = properties(correlation_id=props.correlation_id)
                    batch.publish(props.reply_to, request.reply(), reply, mandatory=False)
            await batch.flush()
        except Exception as error:
            return error
        await self._ack([request.message for request in requests])
        return None

    async def _ack(self, messages: list[DeliveredMessage]) -> None:
        """Ack ``messages`` in one write per channel they came on. A channel that closed
        meanwhile cannot ack: the broker redelivers those, and handling is idempotent."""
        batches: dict[int, FrameBatch] = {}
        for message in messages:
            assert message.delivery_tag is not None
            channel = cast(aiormq.Channel, message.channel)
            batches.setdefault(id(channel), FrameBatch(channel)).ack(message.delivery_tag)
        for batch in batches.values():
            try:
                await batch.flush()
            except delivery.SETTLE_ERRORS as error:
                log.warning(
                    "delivery.unsettled",
                    how="ack",
                    count=len(batch),
                    error=f"{type(error).__name__}: {error}",
                    note="channel gone; the broker redelivers them",
                )

    def _retry_later(self, message: DeliveredMessage) -> None:
        base, cap = self._retry.base_delay, self._retry.max_delay
        task = asyncio.create_task(delivery.retry_later(message, base, cap))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _write(self, ops: Sequence[_StoreOp]) -> list[dict[str, JobState]]:
        """Group commit: the jobs to add and to mark queued of concurrent rounds, one
        transaction."""
        new = [job for op in ops for job in op.add]
        queued = [job_id for op in ops for job_id in op.queued]
        states = await self._store.write_round(new, queued)
        return [states for _ in ops]
