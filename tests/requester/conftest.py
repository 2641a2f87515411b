"""Fixtures: job stores on SQLite and a throwaway Postgres database; a RabbitMQ vhost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from requester.store import JobStore, Limits

from .services import postgres_database

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
