"""``shoal.claims``: executors claim, renew and release job runs, answered from the store.

A claim request carries every run an executor is about to start (several when slots free up
together); the reply has one verdict per run, in order (``shoal.wire.Verdict``). The store
decides (``shoal.requester.store.claims``); the one thing it cannot tell is whether the executor
holding the run still runs it. For a ``claimed`` answer naming a holder, this handler asks
:class:`~shoal.requester.leases.Holders`: if the holder is gone from the broker — its compute
message was redelivered because its executor died — the run is taken over at once, live lease
or not; a lapsed lease of a live holder is taken over only once that holder had the grace to
renew it (a requester outage longer than a lease does not hand over running jobs). The
holder's late events are then refused by the recorder. A request that fails restarts the grace.

Only executor accounts may claim (``Access.is_executor`` on the request's broker-checked
``user_id``); anyone else is answered an ``AccessError`` and the store is not touched.
"""

from __future__ import annotations

import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from shoal.errors import AccessError, ProtocolError
from shoal.wire import ClaimReply, ClaimRequest, Verdict, WireError, decode

from . import delivery
from .access import Access
from .leases import Holders
from .replies import reply
from .store import JobStore
from .store.claims import Claimed
from .submissions import RetryPolicy

log = structlog.get_logger(__name__)


class Claims:
    """Consumer callback for ``shoal.claims``."""

    def __init__(
        self,
        store: JobStore,
        replies: AbstractExchange,
        holders: Holders,
        retry: RetryPolicy,
        access: Access,
    ) -> None:
        self._store = store
        self._access = access
        self._replies = replies
        self._holders = holders
        self._retry = retry

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Answer one request; settle it after the reply."""
        if not message.reply_to:
            log.warning("claims.refused", error="request without reply_to")
            await delivery.dead_letter(message)
            return
        try:
            try:
                if not self._access.is_executor(message.user_id):
                    raise AccessError(f"user {message.user_id!r} is not an executor account")
                request = decode(message.body, ClaimRequest)
                answer = ClaimReply(verdicts=await self.handle(request))
            except (ProtocolError, AccessError) as error:
                log.warning("claims.refused", user=message.user_id, error=error.message)
                answer = ClaimReply(error=WireError.of(error))
            await reply(self._replies, message, answer)
        except Exception as error:
            self._holders.unheard()  # renewals may be failing too: their leases lapse
            log.warning("claims.retry", error=f"{type(error).__name__}: {error}")
            await delivery.retry_later(message, self._retry.base_delay, self._retry.max_delay)
            return
        await delivery.ack(message)

    async def handle(self, request: ClaimRequest) -> list[Verdict]:
        """The verdicts for ``request``'s runs."""
        found = await self._store.claim_runs(
            request.op, request.executor, request.items, request.lease
        )
        verdicts: list[Verdict] = []
        for item, claimed in zip(request.items, found, strict=True):
            verdict = claimed.verdict
            if await self._may_take(request, claimed):
                assert claimed.holder_attempt is not None
                taken = await self._store.take_over(
                    item.job_id,
                    item.attempt,
                    request.executor,
                    claimed.holder_attempt,
                    request.lease,
                    lapsed=claimed.lapsed,
                )
                if taken:
                    verdict = "granted"
                    log.info(
                        "claim.taken_over",
                        job_id=item.job_id,
                        holder=claimed.holder,
                        lapsed=claimed.lapsed,
                    )
            if request.op == "claim" and verdict != "granted":
                log.info("claim.refused", job_id=item.job_id, verdict=verdict)
            verdicts.append(verdict)
        return verdicts

    async def _may_take(self, request: ClaimRequest, claimed: Claimed) -> bool:
        """Whether the run another executor holds may go to this claim (:class:`Holders`)."""
        holder = claimed.holder
        if not holder or claimed.holder_attempt is None or holder == request.executor:
            return False
        return await self._holders.may_take(holder, claimed.lapsed)
