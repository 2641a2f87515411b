"""Fixtures: job stores on SQLite and a throwaway Postgres; a private RabbitMQ vhost with the
topology declared and purged per test; an in-process requester."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import JobStore, Limits
from shoal.topology import DEAD_QUEUE, WORK_QUEUES, declare

from .amqp import Client, broker
from .services import postgres_database, rabbit_vhost

LIMITS = Limits(log_bytes=64, output_bytes=1024)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    """A fresh job store on each database (the same contract tests run on both)."""
    if request.param == "sqlite":
        opened = await JobStore.open(f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}", LIMITS)
        yield opened
        await opened.close()
        return
    async with postgres_database() as url:
        opened = await JobStore.open(url, LIMITS)
        yield opened
        await opened.close()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """This test session's own vhost."""
    with rabbit_vhost() as url:
        yield url


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    """A connection to the test vhost, topology declared and every queue purged."""
    conn = await broker(amqp_url)
    channel = await conn.channel()
    topology = await declare(channel)
    for name in (*WORK_QUEUES, DEAD_QUEUE):
        await topology.queues[name].purge()
    await channel.close()
    yield conn
    await conn.close()


@pytest.fixture
async def client(connection: AbstractRobustConnection) -> Client:
    """Submits raw bodies and waits for replies."""
    return await Client.open(connection)


@pytest.fixture
def requester_settings(amqp_url: str, tmp_path: Path) -> RequesterSettings:
    """Settings of a requester on the test vhost with its own SQLite store."""
    return RequesterSettings(
        broker_url=SecretStr(amqp_url),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'requester.sqlite3'}",
        log_limit_bytes=64,
        output_limit_bytes=1024,
        retry_base_delay=0.01,
        retry_max_delay=0.05,
        shutdown_grace=5.0,
        name="requester-test",
    )


@pytest.fixture
async def requester(
    connection: AbstractRobustConnection, requester_settings: RequesterSettings
) -> AsyncIterator[Requester]:
    """A running in-process requester."""
    running = Requester(requester_settings)
    await running.start()
    yield running
    await running.stop()
