"""Real services shared by the test suites: a throwaway Postgres database, a private vhost.

RabbitMQ isolation: each test session (of each suite that needs a broker) gets its own vhost
(``shoal-test-<hex>``), made and deleted with ``rabbitmqctl``; the real topology names are used
inside it and queues are purged between tests, so nothing touches the default vhost that other
processes use (a requester or executor running on the same machine would take the tests' jobs
and the tests would purge its queues).
Set ``SHOAL_TEST_AMQP`` (default ``amqp://guest:guest@127.0.0.1:5672``) and
``SHOAL_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``) to point
elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote, unquote

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def _postgres_admin_url() -> str:
    url = os.environ.get("SHOAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _admin(statement: str) -> None:
    engine = create_async_engine(_postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new, empty database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"shoal_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{_postgres_admin_url().rsplit('/', 1)[0]}/{name}"
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl ARGS`` (quietly), returning its output; raises on failure."""
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


@contextlib.contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A private vhost for guest; yields its AMQP URL and deletes it afterwards."""
    base = os.environ.get("SHOAL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
    vhost = f"shoal-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{base}/{quote(vhost, safe='')}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def vhost_of(url: str) -> str:
    """The vhost named by an AMQP URL from :func:`rabbit_vhost`."""
    return unquote(url.rsplit("/", 1)[1])
