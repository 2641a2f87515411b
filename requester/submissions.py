"""The submission pipeline: parse → translate → store → publish → reply → settle.

Exactly-once *effect* on top of at-least-once delivery:

- the runnable job's ID is a function of the submission (``derived_job_id`` of the submitted
  ID, which itself is derived from ``--idempotency-key`` when there is one), so a redelivered
  submission names the same job;
- the job is stored ``pending`` before its compute message is published, and marked
  ``queued`` once the broker confirmed it; a redelivery that finds it past ``pending`` only
  replies. The window left — a crash after the confirm and before the ``queued`` commit —
  can publish the compute message twice, under the same job ID and ``message_id``: the store
  still holds one job, and executors skip a job ID they already run;
- the submission is acked only after the store commit, the confirmed publish and the reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from shoal.errors import ShoalError
from shoal.model import JobState, derived_job_id
from shoal.topology import COMPUTE_QUEUE
from shoal.wire import ComputeRequest, Submission, SubmitReply, WireError, decode, encode

from . import delivery
from .batching import Batcher
from .publishing import Publisher, properties
from .store import JobStore, NewJob
from .translate import TranslatorRegistry, translate_job

log = structlog.get_logger(__name__)


def idempotent_id(key: str) -> str:
    """The submitted job's ID for an ``--idempotency-key``: same key, same job."""
    return derived_job_id(f"idem:{key}")


def prepare(body: bytes, registry: TranslatorRegistry) -> NewJob:
    """Parse and translate a submission; raises ``ShoalError`` for a bad one."""
    submission = decode(body, Submission)
    update: dict[str, object] = {"state": JobState.PENDING}
    if submission.idempotency_key:
        update["id"] = idempotent_id(submission.idempotency_key)
    translation = translate_job(submission.job.model_copy(update=update), registry)
    return NewJob(translation.original, translation.runnable, submission.idempotency_key)


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off of transient failures (the queue's delivery limit bounds the attempts)."""

    base_delay: float = 0.2
    max_delay: float = 5.0


class SubmissionHandler:
    """Handles one ``shoal.submit`` delivery at a time per call; many calls run at once.

    ``compute`` is a channel with publisher confirms (compute messages); ``replies`` one
    without (see ``requester.replies`` for why replies are not confirmed).
    """

    def __init__(
        self,
        store: JobStore,
        compute: AbstractChannel,
        replies: AbstractChannel,
        registry: TranslatorRegistry,
        retry: RetryPolicy,
    ) -> None:
        self._store = store
        self._compute = Publisher(compute, confirmed=True)
        self._replies = Publisher(replies, confirmed=False)
        self._registry = registry
        self._retry = retry
        self._rounds: Batcher[NewJob | str, JobState | None] = Batcher(self._write_round)
        self._busy: dict[str, asyncio.Future[None]] = {}

    async def _write_round(self, ops: Sequence[NewJob | str]) -> list[JobState | None]:
        """Group commit: new jobs to add and (``str``) job IDs to mark queued, one transaction."""
        new = [op for op in ops if isinstance(op, NewJob)]
        queued = [op for op in ops if isinstance(op, str)]
        states = await self._store.write_round(new, queued)
        return [states[op.runnable.id] if isinstance(op, NewJob) else None for op in ops]

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Settle ``message`` exactly once: ack, dead-letter, or requeue later."""
        try:
            item = prepare(message.body, self._registry)
        except ShoalError as error:
            await self._refuse(message, error)
            return
        job_id, original_id = item.runnable.id, item.original.id
        try:
            await self._enqueue(item)
            await self._reply(message, SubmitReply(job_id=job_id, original_id=original_id))
        except Exception as error:
            log.warning(
                "submission.retry",
                job_id=job_id,
                original_id=original_id,
                error=f"{type(error).__name__}: {error}",
                redelivered=message.redelivered,
            )
            await delivery.retry_later(message, self._retry.base_delay, self._retry.max_delay)
            return
        await delivery.ack(message)
        log.info(
            "submission.accepted",
            job_id=job_id,
            original_id=original_id,
            job_type=item.original.engine_type,
        )

    async def _reply(self, request: AbstractIncomingMessage, answer: SubmitReply) -> None:
        """Answer on the request's ``reply_to`` (if any) before it is acked; not confirmed."""
        if request.reply_to:
            props = properties(correlation_id=request.correlation_id)
            await self._replies.publish(request.reply_to, encode(answer), props, mandatory=False)

    async def _enqueue(self, item: NewJob) -> None:
        """Store the job, publish it to the compute queue unless done before, mark queued."""
        job_id = item.runnable.id
        while (other := self._busy.get(job_id)) is not None:
            await other
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._busy[job_id] = done
        try:
            state = await self._rounds.submit(item)
            if state is not JobState.PENDING:
                log.info("submission.duplicate", job_id=job_id, state=state)
                return
            body = encode(ComputeRequest(job=item.runnable))
            await self._compute.publish(
                COMPUTE_QUEUE, body, properties(message_id=job_id), mandatory=True
            )
            await self._rounds.submit(job_id)
        finally:
            del self._busy[job_id]
            done.set_result(None)

    async def _refuse(self, message: AbstractIncomingMessage, error: ShoalError) -> None:
        """A bad submission: answer it with the error, or dead-letter it when nobody asked."""
        log.warning(
            "submission.refused",
            error_type=type(error).__name__,
            error=error.message,
            reply_to=message.reply_to,
        )
        if not message.reply_to:
            await delivery.dead_letter(message)
            return
        try:
            await self._reply(message, SubmitReply(error=WireError.of(error)))
        except Exception as failure:
            log.warning("submission.reply_failed", error=f"{type(failure).__name__}: {failure}")
            await delivery.retry_later(message, self._retry.base_delay, self._retry.max_delay)
            return
        await delivery.ack(message)

    async def close(self) -> None:
        """Finish the store rounds in progress."""
        await self._rounds.close()
