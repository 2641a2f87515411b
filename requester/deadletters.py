"""``shoal.dead``: what became of each dead-lettered message, so no job is stuck by one.

Where a message died and why come from its ``x-death`` header (the newest death first):

- a compute message (``shoal.compute``): its job ends ``failed`` with the reason, e.g.
  "delivery limit reached", and the error of its last run that failed with one (an earlier
  attempt's), and executors are told to stop it — unless its retry policy lists ``lost`` and
  attempts remain: then it is queued again (``shoal.requester.store.retries``);
- a submission (``shoal.submit``), or each of a batch: if its job was stored and never
  queued, the job ends ``failed``; a caller waiting on ``reply_to`` is answered with the job
  (when it was queued after all) or with the error; a submission that never became a job is
  only logged;
- anything else (events, API requests, unreadable bodies) is logged and dropped.

Every message is settled: acked once handled, or requeued after a back-off when the store
or the broker failed, at most :data:`~shoal.topology.DELIVERY_LIMIT` times, then logged and
dropped (``shoal.dead`` has no dead-letter queue of its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from shoal import limits
from shoal.errors import NotFoundError, ShoalError, UnavailableError
from shoal.model import JobState
from shoal.names import COMPUTE_QUEUES
from shoal.topology import DELIVERY_LIMIT, SUBMIT_QUEUE
from shoal.wire import (
    SUBMISSION_BATCH,
    ComputeRequest,
    Submission,
    SubmitBatchReply,
    SubmitReply,
    WireError,
    decode,
    read_batch,
)

from . import delivery
from .announce import Announcer
from .replies import reply
from .store import JobStore
from .submissions import RetryPolicy, idempotent_id

log = structlog.get_logger(__name__)

REASONS = {
    "delivery_limit": (
        f"delivery limit reached: taken more than {DELIVERY_LIMIT} times and never finished"
    ),
    "rejected": "rejected as unreadable",
    "expired": "expired before anyone took it",
    "maxlen": "dropped from a full queue",
}


@dataclass(frozen=True)
class Death:
    """Where and why a message was dead-lettered (its newest ``x-death`` entry)."""

    queue: str
    reason: str

    @property
    def why(self) -> str:
        """The reason in words."""
        return REASONS.get(self.reason, f"dead-lettered ({self.reason or 'no reason given'})")

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> Death:
        """Read from the headers; the routing key names the queue when there is no header."""
        headers: dict[str, Any] = dict(message.headers or {})
        deaths = headers.get("x-death")
        newest = deaths[0] if isinstance(deaths, list) and deaths else {}
        newest = newest if isinstance(newest, dict) else {}
        return cls(
            queue=_text(newest.get("queue")) or message.routing_key or "",
            reason=_text(newest.get("reason")) or _text(headers.get("x-first-death-reason")),
        )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


class DeadLetters:
    """Consumer callback for ``shoal.dead``."""

    def __init__(
        self,
        store: JobStore,
        replies: AbstractExchange,
        announcer: Announcer,
        retry: RetryPolicy,
    ) -> None:
        self._store = store
        self._replies = replies
        self._announcer = announcer
        self._retry = retry

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Handle one dead letter; settle it."""
        death = Death.of(message)
        try:
            if death.queue in COMPUTE_QUEUES.values():
                await self._compute(message, death)
            elif death.queue == SUBMIT_QUEUE:
                await self._submission(message, death)
            else:
                log.warning(
                    "dead_letter.dropped",
                    queue=death.queue,
                    reason=death.reason,
                    routing_key=message.routing_key,
                )
        except Exception as error:
            tries = (message.headers or {}).get("x-delivery-count")
            if isinstance(tries, int) and tries >= DELIVERY_LIMIT:
                log.error("dead_letter.given_up", queue=death.queue, error=_name(error))
            else:
                log.warning("dead_letter.retry", queue=death.queue, error=_name(error))
                base, cap = self._retry.base_delay, self._retry.max_delay
                await delivery.retry_later(message, base, cap)
                return
        await delivery.ack(message)

    async def _compute(self, message: AbstractIncomingMessage, death: Death) -> None:
        """The job of a dead compute message ends ``failed`` with the reason."""
        try:
            job = decode(message.body, ComputeRequest).job
        except ShoalError as error:
            log.warning("dead_letter.unreadable", queue=death.queue, error=error.message)
            return
        where = f"dead-lettered from {death.queue}"
        # the runs an earlier dead letter marked lost only repeat this reason: left out
        last = await self._store.last_error(job.id, ignoring=f"lost: {death.why}")
        reason = await self._store.retry_lost(
            job.id,
            f"{death.why} ({where}; last error: {last})" if last else f"{death.why} ({where})",
        )
        if reason is None:
            log.warning("dead_letter.retried", job_id=job.id, reason=death.reason)
            return
        left = await self._store.fail_unless_ended(job.id, reason)
        log.warning("dead_letter.compute", job_id=job.id, reason=death.reason, was=left)
        if left is not None:
            await self._announcer.failed(job.id, job.owner, reason)

    async def _submission(self, message: AbstractIncomingMessage, death: Death) -> None:
        """Fail each job of the submission (or batch) that was stored but never queued;
        answer the caller."""
        batch = message.type == SUBMISSION_BATCH
        try:
            limits.check_body(message.body, limits.MAX_SUBMISSION_BYTES, "submission")
            submissions = read_batch(message.body) if batch else [decode(message.body, Submission)]
        except ShoalError as error:
            log.warning("dead_letter.unreadable", queue=death.queue, error=error.message)
            return
        reason = f"its submission was dead-lettered from {death.queue}: {death.why}"
        answers = []
        for submission in submissions:
            if isinstance(submission, ShoalError):
                answers.append(SubmitReply(error=WireError.of(submission)))
            else:
                answers.append(await self._dead_job(message, submission, death, reason))
        answer = SubmitBatchReply(replies=answers) if batch else answers[0]
        await reply(self._replies, message, answer)

    async def _dead_job(
        self, message: AbstractIncomingMessage, submission: Submission, death: Death, reason: str
    ) -> SubmitReply:
        """The answer for one dead-lettered submission; its job fails if stored, not queued."""
        key = submission.idempotency_key
        submitted = idempotent_id(message.user_id or "", key) if key else submission.job.id
        try:
            job = await self._store.resolve(submitted)
        except NotFoundError:
            job = None
        answer = SubmitReply(error=WireError.of(UnavailableError(f"not accepted: {reason}")))
        if job is None:
            log.warning("dead_letter.submission", submitted=submitted, reason=death.reason)
        elif JobState(job["state"]) is JobState.PENDING:
            left = await self._store.fail_unless_ended(job["id"], reason, before=JobState.QUEUED)
            if left is not None:
                await self._announcer.failed(job["id"], str(job.get("owner") or ""), reason)
            log.warning("dead_letter.submission", job_id=job["id"], reason=death.reason)
        else:
            answer = SubmitReply(job_id=job["id"], original_id=job["original_id"] or job["id"])
        return answer


def _name(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
