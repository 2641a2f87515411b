"""Lapsed leases of live executors (``shoal.requester.leases``).

A lease also lapses while no requester answers renewals. A requester outage longer than a
lease must neither resend a live executor's run nor hand it to another executor: the holder
keeps it and renews it on its next round. A lapsed run whose holder is gone is still resent
and taken over at once, and a live holder that does not renew within the grace loses its run.
First the claims handler and the sweeper on each store with a stand-in broker, then the
outage itself with real requesters and RabbitMQ.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

import pytest
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from shoal.broker import broker_user
from shoal.executor.claims import AmqpClaimTransport, Claims
from shoal.liveness import executor_queue
from shoal.model import Job
from shoal.requester.access import Access
from shoal.requester.announce import Announcer
from shoal.requester.claims import Claims as ClaimsHandler
from shoal.requester.leases import Holders
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import JobStore, NewJob
from shoal.requester.submissions import RetryPolicy
from shoal.requester.sweeper import Sweeper
from shoal.topology import COMPUTE_QUEUE
from shoal.wire import ClaimItem, ClaimOp, ClaimRequest, ComputeRequest, Verdict, decode

from .amqp import broker
from .jobs import docker_job

GRACE = 30.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Broker:
    """Which executors are connected, as ``shoal.liveness`` would tell."""

    def __init__(self, *connected: str) -> None:
        self.connected = set(connected)
        self.asked: list[str] = []

    async def alive(self, executor: str) -> bool:
        self.asked.append(executor)
        return executor in self.connected


class RequesterParts:
    """The claims handler and sweeper of one requester, on ``store``."""

    def __init__(self, store: JobStore, broker: Broker) -> None:
        self.store = store
        self.clock = Clock()
        self.holders = Holders(broker.alive, GRACE, self.clock)
        self.claims = ClaimsHandler(
            store,
            cast(AbstractExchange, None),
            self.holders,
            RetryPolicy(0.01, 0.05),
            Access(requester="requester"),
        )
        self.sweeper = Sweeper(
            store,
            cast(Announcer, None),
            interval=1.0,
            compute=cast(AbstractExchange, None),
            holders=self.holders,
            resend_every=120.0,
        )

    async def ask(self, op: ClaimOp, executor: str, job_id: str, lease: float = 30.0) -> Verdict:
        item = ClaimItem(job_id=job_id, attempt=f"{executor}-1")
        request = ClaimRequest(op=op, executor=executor, lease=lease, items=[item])
        [verdict] = await self.claims.handle(request)
        return verdict

    async def resent(self) -> list[str]:
        """Run the sweeper's lapse step; the jobs whose compute message is due."""
        await self.sweeper.resend_lapsed()
        return [job.id for job in await self.store.due_retries()]


async def queued(store: JobStore) -> str:
    job = docker_job()
    await store.add_jobs([NewJob(job, job)])
    await store.mark_queued([job.id])
    return job.id


async def lapsed_run(store: JobStore, requester: RequesterParts) -> str:
    """A job whose run ``ex-a`` claimed and whose lease then lapsed unrenewed."""
    job_id = await queued(store)
    assert await requester.ask("claim", "ex-a", job_id, lease=0.05) == "granted"
    await asyncio.sleep(0.1)  # the lease lapses: time passing is what is tested
    return job_id


async def test_a_live_holders_lapsed_run_is_neither_resent_nor_taken_over(
    store: JobStore,
) -> None:
    requester = RequesterParts(store, Broker("ex-a", "ex-b"))
    job_id = await lapsed_run(store, requester)
    assert await requester.resent() == []
    assert await requester.ask("claim", "ex-b", job_id) == "claimed"
    assert await requester.ask("renew", "ex-a", job_id) == "granted"  # its next keep round
    assert await store.lapsed_runs() == []
    assert await requester.ask("claim", "ex-b", job_id) == "claimed"


async def test_a_gone_holders_lapsed_run_is_resent_and_taken_over(store: JobStore) -> None:
    requester = RequesterParts(store, Broker("ex-b"))
    job_id = await lapsed_run(store, requester)
    assert await requester.resent() == [job_id]
    assert await requester.ask("claim", "ex-b", job_id) == "granted"
    assert await requester.ask("renew", "ex-a", job_id) == "expired"  # ex-a learns it lost it


async def test_a_live_holder_silent_for_the_grace_loses_its_run(store: JobStore) -> None:
    broker = Broker("ex-a", "ex-b")
    requester = RequesterParts(store, broker)
    job_id = await lapsed_run(store, requester)
    assert await requester.resent() == []
    requester.clock.now += GRACE  # it never renewed: it no longer runs the job
    requester.holders.unheard()  # ... unless renewals went unanswered again
    assert await requester.resent() == []
    requester.clock.now += GRACE
    asked = len(broker.asked)
    assert await requester.resent() == [job_id]
    assert len(broker.asked) == asked  # past the grace, a lapse needs no broker question
    assert await requester.ask("claim", "ex-b", job_id) == "granted"


async def test_a_run_handed_back_is_resent_and_taken_without_asking(store: JobStore) -> None:
    broker = Broker("ex-a", "ex-b")
    requester = RequesterParts(store, broker)
    job_id = await queued(store)
    assert await requester.ask("claim", "ex-a", job_id) == "granted"
    assert await requester.ask("release", "ex-a", job_id) == "granted"
    assert await requester.resent() == [job_id]
    assert await requester.ask("claim", "ex-b", job_id) == "granted"
    assert broker.asked == []


async def test_a_live_lease_of_a_gone_holder_is_taken_at_once(store: JobStore) -> None:
    requester = RequesterParts(store, Broker("ex-b"))
    job_id = await queued(store)
    assert await requester.ask("claim", "ex-a", job_id) == "granted"
    assert await requester.resent() == []  # a live lease is never resent
    assert await requester.ask("claim", "ex-b", job_id) == "granted"


async def executor_claims(
    connection: AbstractRobustConnection, url: str, lease: float
) -> tuple[Claims, AbstractRobustConnection]:
    """A claims client and the connection holding its executor's control queue (its life)."""
    executor = f"ex-{uuid.uuid4().hex[:8]}"
    life = await broker(url)
    channel = await life.channel()
    await channel.declare_queue(executor_queue(executor), exclusive=True, auto_delete=True)
    transport = AmqpClaimTransport(
        await connection.channel(publisher_confirms=True), 10.0, broker_user(url)
    )
    await transport.start()
    return Claims(transport, executor, lease=lease, renew_every=0.1), life


async def sent_jobs(connection: AbstractRobustConnection) -> list[str]:
    """The jobs of the compute messages waiting in ``shoal.compute`` (taken off it)."""
    channel = await connection.channel()
    queue = await channel.get_queue(COMPUTE_QUEUE)
    found = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        found.append(decode(message.body, ComputeRequest).job.id)
    await channel.close()
    return found


@pytest.mark.rabbitmq
async def test_a_requester_outage_longer_than_a_lease_keeps_live_executors_runs(
    requester_settings: RequesterSettings, connection: AbstractRobustConnection
) -> None:
    settings = requester_settings.model_copy(update={"sweep_interval": 0.1, "claim_grace": 10.0})
    url = settings.broker_url.get_secret_value()
    first = Requester(settings)
    await first.start()
    assert first.store is not None
    jobs: list[Job] = [docker_job(), docker_job()]
    await first.store.add_jobs([NewJob(job, job) for job in jobs])
    await first.store.mark_queued([job.id for job in jobs])
    kept, left = (job.id for job in jobs)
    live, live_life = await executor_claims(connection, url, 0.5)
    gone, gone_life = await executor_claims(connection, url, 0.5)
    assert (await live.claim(kept))[0] == "granted"
    assert (await gone.claim(left))[0] == "granted"
    await first.stop()
    await gone_life.close()  # its executor died meanwhile
    await asyncio.sleep(1.0)  # both leases lapse: nobody answers renewals
    second = Requester(settings)
    await second.start()  # its sweeper runs at once
    other, other_life = await executor_claims(connection, url, 30.0)
    lost: list[str] = []
    try:
        # Before the live executor's next renewal (those of the outage reached no requester;
        # requests still queued would be answered first here, but a fleet's backlog races
        # with the first sweep and with other executors' claims):
        assert (await other.claim(kept))[0] == "claimed"
        assert (await other.claim(left))[0] == "granted"
        keeping = asyncio.create_task(live.keep(lost.append))
        await asyncio.sleep(0.5)  # the sweeper ran since; the live holder renewed
        keeping.cancel()
        assert await sent_jobs(connection) == [left]  # only the gone executor's run was resent
        assert lost == []
        assert list(live.held) == [kept]
        assert second.store is not None
        assert await second.store.lapsed_runs() == []
    finally:
        for life in (live_life, other_life):
            await life.close()
        await second.stop()
