"""Execution claims: the executor's client against a real requester (RabbitMQ + store) and
against its in-memory twin, with the same contract tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.broker import broker_user
from shoal.executor.claims import AmqpClaimTransport, Claims, MemoryClaimBook, MemoryClaimTransport
from shoal.liveness import executor_queue
from shoal.model import Job
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import NewJob

from .amqp import broker
from .jobs import docker_job


@dataclass
class World:
    """A claims service: clients for executors, jobs to claim, stops and executor deaths."""

    client: Callable[[str, float], Awaitable[Claims]]
    add: Callable[[Job], Awaitable[None]]
    stop: Callable[[str], Awaitable[bool]]
    kill: Callable[[str], Awaitable[None]]
    lives: dict[str, AbstractRobustConnection] = field(default_factory=dict)
    """Per executor, the connection holding its exclusive control queue (its liveness)."""


def memory_world() -> World:
    book = MemoryClaimBook()

    async def client(executor: str, lease: float) -> Claims:
        return Claims(MemoryClaimTransport(book), executor, lease=lease, renew_every=1.0)

    async def add(job: Job) -> None:
        book.add(job.id)

    async def stop(job_id: str) -> bool:
        return book.stop(job_id)

    async def kill(executor: str) -> None:
        book.gone.add(executor)

    return World(client, add, stop, kill)


def amqp_world(connection: AbstractRobustConnection, requester: Requester, url: str) -> World:
    store = requester.store
    assert store is not None
    world: World

    async def client(executor: str, lease: float) -> Claims:
        life = await broker(url)
        channel = await life.channel()
        await channel.declare_queue(executor_queue(executor), exclusive=True, auto_delete=True)
        world.lives[executor] = life
        transport = AmqpClaimTransport(
            await connection.channel(publisher_confirms=True), 10.0, broker_user(url)
        )
        await transport.start()
        return Claims(transport, executor, lease=lease, renew_every=1.0)

    async def add(job: Job) -> None:
        await store.add_jobs([NewJob(job, job)])
        await store.mark_queued([job.id])

    async def stop(job_id: str) -> bool:
        return await store.stop_if_waiting(job_id, "stopped by test")

    async def kill(executor: str) -> None:
        await world.lives.pop(executor).close()

    world = World(client, add, stop, kill)
    return world


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    if request.param == "memory":
        yield memory_world()
        return
    settings: RequesterSettings = request.getfixturevalue("requester_settings")
    settings = settings.model_copy(update={"claim_grace": 0.0})  # as the memory twin
    connection = await broker(settings.broker_url.get_secret_value())
    running = Requester(settings)
    await running.start()
    made = amqp_world(connection, running, settings.broker_url.get_secret_value())
    try:
        yield made
    finally:
        for life in made.lives.values():
            await life.close()
        await running.stop()
        await connection.close()


async def queued(world: World) -> Job:
    job = docker_job()
    await world.add(job)
    return job


async def lapse(lease: float) -> None:
    """Let a lease of ``lease`` seconds run out (the passing of time is what is tested)."""
    await asyncio.sleep(lease + 0.1)


async def test_first_claim_wins(world: World) -> None:
    job = await queued(world)
    first, second = await world.client("ex-a", 30), await world.client("ex-b", 30)
    assert (await first.claim(job.id))[0] == "granted"
    assert (await second.claim(job.id))[0] == "claimed"
    assert (await first.claim(job.id))[0] == "claimed"  # a new attempt, even from the holder
    assert list(first.held) == [job.id]


async def test_claims_of_slots_freed_together(world: World) -> None:
    jobs = [await queued(world) for _ in range(3)]
    first, second = await world.client("ex-a", 30), await world.client("ex-b", 30)
    verdicts = await asyncio.gather(
        *(c.claim(j.id) for j in jobs for c in (first, second)),
    )
    assert sorted(v for v, _ in verdicts) == ["claimed"] * 3 + ["granted"] * 3


async def test_stopped_queued_job_is_never_granted(world: World) -> None:
    job, running = await queued(world), await queued(world)
    claims = await world.client("ex-a", 30)
    assert await world.stop(job.id)
    assert (await claims.claim(job.id))[0] == "stopped"
    assert (await claims.claim(running.id))[0] == "granted"
    assert not await world.stop(running.id)  # held by a live run: the executor stops it


async def test_a_claim_retried_with_its_attempt_is_granted_again(world: World) -> None:
    job = await queued(world)
    claims = await world.client("ex-a", 30)
    verdict, attempt = await claims.claim(job.id)
    assert verdict == "granted"
    assert await claims.claim(job.id, attempt) == ("granted", attempt)
    assert (await claims.claim(job.id))[0] == "claimed"


async def test_unknown_job(world: World) -> None:
    claims = await world.client("ex-a", 30)
    assert (await claims.claim("j-nobody"))[0] == "unknown"


async def test_lapsed_lease_is_taken_over_and_the_holder_learns_it(world: World) -> None:
    job = await queued(world)
    old, new = await world.client("ex-a", 0.3), await world.client("ex-b", 30)
    assert (await old.claim(job.id))[0] == "granted"
    assert await old.renew() == []
    await lapse(0.3)
    assert (await new.claim(job.id))[0] == "granted"
    assert await old.renew() == [job.id]
    assert old.held == {}
    assert await new.renew() == []


async def test_run_of_a_gone_executor_is_taken_over_at_once(world: World) -> None:
    job = await queued(world)
    old, new = await world.client("ex-a", 30), await world.client("ex-b", 30)
    assert (await old.claim(job.id))[0] == "granted"
    await world.kill("ex-a")
    assert (await new.claim(job.id))[0] == "granted"


async def test_released_run_is_claimed_again(world: World) -> None:
    job = await queued(world)
    old, new = await world.client("ex-a", 30), await world.client("ex-b", 30)
    assert (await old.claim(job.id))[0] == "granted"
    await old.release(job.id)
    assert old.held == {}
    assert (await new.claim(job.id))[0] == "granted"


async def test_lost_leases_reach_the_keeper(world: World) -> None:
    job, kept = await queued(world), await queued(world)
    old, new = await world.client("ex-a", 0.3), await world.client("ex-b", 30)
    old.renew_every = 0.05
    assert (await old.claim(job.id))[0] == "granted"
    await lapse(0.3)
    assert (await new.claim(job.id))[0] == "granted"
    assert (await old.claim(kept.id))[0] == "granted"
    lost: asyncio.Queue[str] = asyncio.Queue()
    keeper = asyncio.create_task(old.keep(lost.put_nowait))
    try:
        assert await asyncio.wait_for(lost.get(), 5) == job.id
    finally:
        keeper.cancel()
    assert list(old.held) == [kept.id]
