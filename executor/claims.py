"""Execution claims, executor side: claim a run before starting it, keep its lease alive.

:class:`Claims` is the client the service uses. ``claim(job_id)`` asks the requester (over a
:class:`ClaimTransport`) whether this executor may run the job, under a new attempt ID;
claims made while one request is in flight go together in the next (one round trip for the
slots that freed up together). A granted attempt is held until :meth:`Claims.forget` (run
ended) or :meth:`Claims.release` (run handed back): :meth:`Claims.keep` renews every held
lease in one request every ``renew_every`` seconds and reports a run whose lease was lost
(taken over after it lapsed, or stopped) so the service hands it back.

Transports: :class:`AmqpClaimTransport` (``shoal.fleet`` → ``shoal.claims`` with direct
reply-to, signed with the executor's broker account, answered by a requester) and
:class:`MemoryClaimTransport` over a :class:`MemoryClaimBook`, the in-memory twin for fast
tests; both pass the contract tests in ``tests/requester/test_claims.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import aiormq
import structlog
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from shoal.broker import Renewal, broker_user, refused
from shoal.errors import UnavailableError, from_wire
from shoal.executor.settings import ExecutorSettings
from shoal.names import CLAIMS_KEY, DIRECT_REPLY_TO, FLEET_EXCHANGE
from shoal.requester.batching import Batcher
from shoal.wire import (
    CONTENT_TYPE,
    ClaimItem,
    ClaimOp,
    ClaimReply,
    ClaimRequest,
    Verdict,
    decode,
    encode,
)

log = structlog.get_logger("executor")


class ClaimTransport(Protocol):
    """Where claim requests are answered; raises ``UnavailableError`` when nobody answers."""

    async def call(self, request: ClaimRequest) -> ClaimReply:
        """Send ``request``, return its reply."""
        ...


def new_attempt() -> str:
    """A fresh attempt ID (one per claim of a run)."""
    return f"a-{uuid.uuid4().hex}"


class Claims:
    """Claims and leases of one executor."""

    def __init__(
        self, transport: ClaimTransport, executor_id: str, *, lease: float, renew_every: float
    ) -> None:
        self._transport = transport
        self.executor_id = executor_id
        self.lease = lease
        self.renew_every = renew_every
        self.held: dict[str, str] = {}
        """Job ID → the attempt this executor holds for it."""
        self._claims: Batcher[ClaimItem, Verdict] = Batcher(self._claim_round)

    async def _call(self, op: ClaimOp, items: Sequence[ClaimItem]) -> list[Verdict]:
        request = ClaimRequest(op=op, executor=self.executor_id, lease=self.lease, items=items)
        reply = await self._transport.call(request)
        if reply.error is not None:
            raise from_wire(reply.error.model_dump())
        if len(reply.verdicts) != len(items):
            raise UnavailableError("the requester answered a claim request with too few verdicts")
        return list(reply.verdicts)

    async def _claim_round(self, items: Sequence[ClaimItem]) -> list[Verdict]:
        return await self._call("claim", items)

    async def claim(self, job_id: str, attempt: str | None = None) -> tuple[Verdict, str]:
        """Claim ``job_id``'s run under ``attempt`` (default: a new one); held when
        ``granted``. Retry a claim that got no answer with the same attempt: the first
        request may have been granted, and the store grants its own attempt again."""
        attempt = attempt or new_attempt()
        verdict = await self._claims.submit(ClaimItem(job_id=job_id, attempt=attempt))
        if verdict == "granted":
            self.held[job_id] = attempt
        return verdict, attempt

    def forget(self, job_id: str) -> None:
        """The run ended: stop renewing its lease (the claim stays, recording the run)."""
        self.held.pop(job_id, None)

    async def release(self, job_id: str) -> None:
        """Hand the run back (shutdown): its lease ends now, so another executor takes it."""
        attempt = self.held.pop(job_id, None)
        if attempt is None:
            return
        try:
            await self._call("release", [ClaimItem(job_id=job_id, attempt=attempt)])
        except Exception as error:  # the lease lapses by itself
            log.warning("claim.release_failed", job_id=job_id, error=str(error))

    async def renew(self) -> list[str]:
        """Renew every held lease in one request; the job IDs whose lease was lost."""
        held = dict(self.held)
        if not held:
            return []
        items = [ClaimItem(job_id=j, attempt=a) for j, a in held.items()]
        verdicts = await self._call("renew", items)
        lost = [i.job_id for i, v in zip(items, verdicts, strict=True) if v != "granted"]
        for job_id in lost:
            if self.held.get(job_id) == held[job_id]:
                del self.held[job_id]
        return lost

    async def keep(self, lost: Callable[[str], None]) -> None:
        """Renew leases every ``renew_every`` seconds until cancelled; ``lost(job_id)`` for
        each run whose claim another attempt (or a stop) took."""
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                gone = await self.renew()
            except Exception as error:  # the requester is away: leases last a while yet
                log.warning("claim.renew_failed", error=f"{type(error).__name__}: {error}")
                continue
            for job_id in gone:
                log.warning("claim.lost", job_id=job_id)
                lost(job_id)


class AmqpClaimTransport:
    """RPC to ``shoal.claims`` (through ``shoal.fleet``) over direct reply-to, on a robust
    channel with confirms; each request carries ``user_id=account`` (the broker checks it is
    the connection's account; the requester answers only executor accounts)."""

    def __init__(self, channel: AbstractRobustChannel, timeout: float, account: str) -> None:
        self._channel = channel
        self._renew = Renewal(channel)
        self._timeout = timeout
        self._account = account
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._counter = 0

    async def start(self) -> None:
        """Consume the direct reply-to queue, again whenever the channel is reopened."""
        await self._consume()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _consume(self) -> None:
        raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        await raw.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)

    async def _on_reopen(self, _channel: Any) -> None:
        await self._consume()

    async def _on_reply(self, message: DeliveredMessage) -> None:
        future = self._waiting.get(message.header.properties.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(message.body)

    async def call(self, request: ClaimRequest) -> ClaimReply:
        self._counter += 1
        correlation = f"claim-{self._counter}"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        properties = Basic.Properties(
            content_type=CONTENT_TYPE,
            reply_to=DIRECT_REPLY_TO,
            correlation_id=correlation,
            user_id=self._account,
        )
        try:
            raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            confirm = await raw.basic_publish(
                encode(request),
                exchange=FLEET_EXCHANGE,
                routing_key=CLAIMS_KEY,
                properties=properties,
                mandatory=True,
            )
            if not isinstance(confirm, Basic.Ack):
                raise UnavailableError(f"the broker did not take the claim request: {confirm!r}")
            return decode(await asyncio.wait_for(future, self._timeout), ClaimReply)
        except TimeoutError:
            raise UnavailableError(
                f"no requester answered a claim within {self._timeout:g}s"
            ) from None
        except aiormq.exceptions.DeliveryError as error:
            if refused(error):
                await self._renew()  # Basic.Nack: the next try goes out on a fresh channel
            raise UnavailableError(f"claim request failed: {error}") from None
        except (
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,  # closed, not yet reopened
            ConnectionError,
        ) as error:
            raise UnavailableError(f"claim request failed: {error}") from None
        finally:
            self._waiting.pop(correlation, None)


async def amqp_claims(
    connection: AbstractRobustConnection, settings: ExecutorSettings, executor_id: str
) -> Claims:
    """The claims client of an executor, on a channel of its own (``shoal.fleet`` declared
    by ``declare_executor(..., claims=True)``)."""
    transport = AmqpClaimTransport(
        await connection.channel(publisher_confirms=True),
        settings.claim_timeout,
        broker_user(settings.broker_url.get_secret_value()),
    )
    await transport.start()
    return Claims(
        transport, executor_id, lease=settings.claim_lease, renew_every=settings.claim_renew_every
    )


@dataclass
class _Hold:
    attempt: str
    executor: str
    ends: float


@dataclass
class MemoryClaimBook:
    """The store's claim rules in memory (``shoal.requester.store.claims``), on a loop clock,
    as a requester past its grace applies them (``shoal.requester.leases``): a lapsed lease
    is taken over whether its holder is alive or not."""

    jobs: dict[str, str] = field(default_factory=dict)
    """Job ID → state (``queued``, ``running``, or a terminal state)."""
    holds: dict[str, _Hold] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    """Executors no longer connected (their live leases may be taken over)."""

    def add(self, job_id: str) -> None:
        """A queued job."""
        self.jobs.setdefault(job_id, "queued")

    def stop(self, job_id: str) -> bool:
        """Stop a job that no live attempt holds; True when it was stopped."""
        if self.jobs.get(job_id) != "queued":
            return False
        hold = self.holds.get(job_id)
        if hold is not None and hold.attempt != "stopped" and hold.ends >= _now():
            return False
        self.holds[job_id] = _Hold("stopped", "", float("inf"))
        self.jobs[job_id] = "stopped"
        return True

    def answer(self, request: ClaimRequest) -> ClaimReply:
        """What a requester answers ``request``."""
        return ClaimReply(verdicts=[self._one(request, item) for item in request.items])

    def _one(self, request: ClaimRequest, item: ClaimItem) -> Verdict:
        hold = self.holds.get(item.job_id)
        mine = hold is not None and hold.attempt == item.attempt
        ends = _now() + request.lease
        if request.op != "claim":
            if mine and hold is not None:
                hold.ends = ends if request.op == "renew" else 0.0
            return "granted" if mine else "expired"
        state = self.jobs.get(item.job_id)
        if state is None:
            return "unknown"
        if state == "stopped" or (hold is not None and hold.attempt == "stopped"):
            return "stopped"
        ended = state not in ("queued", "running")
        if hold is None:
            if ended:
                return "expired"
            self.holds[item.job_id] = _Hold(item.attempt, request.executor, ends)
            return "granted"
        if ended:
            return "claimed"
        lapsed = hold.ends < _now() or (
            hold.executor != request.executor and hold.executor in self.gone
        )
        if mine or lapsed:
            self.holds[item.job_id] = _Hold(item.attempt, request.executor, ends)
            return "granted"
        return "claimed"


def _now() -> float:
    return asyncio.get_running_loop().time()


@dataclass
class MemoryClaimTransport:
    """A :class:`ClaimTransport` answered by a :class:`MemoryClaimBook`."""

    book: MemoryClaimBook

    async def call(self, request: ClaimRequest) -> ClaimReply:
        return self.book.answer(request)
