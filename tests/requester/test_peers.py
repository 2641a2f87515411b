"""One job store per broker: a requester of another store refuses to start (real broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.errors import UsageError
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings

pytestmark = pytest.mark.rabbitmq


def on_store(settings: RequesterSettings, path: Path, name: str) -> RequesterSettings:
    url = f"sqlite+aiosqlite:///{path}"
    return settings.model_copy(update={"database_url": url, "name": name})


async def test_a_requester_of_another_store_refuses_to_start(
    requester_settings: RequesterSettings, connection: AbstractRobustConnection, tmp_path: Path
) -> None:
    first = Requester(on_store(requester_settings, tmp_path / "a.sqlite3", "first"))
    await first.start()
    try:
        second = Requester(on_store(requester_settings, tmp_path / "b.sqlite3", "second"))
        with pytest.raises(UsageError, match="requester 'first' already serves this broker"):
            await second.start()
        await second.stop()
        same = Requester(on_store(requester_settings, tmp_path / "a.sqlite3", "same-store"))
        await same.start()  # the same store: several requesters are fine
        await same.stop()
    finally:
        await first.stop()
    after = Requester(on_store(requester_settings, tmp_path / "b.sqlite3", "after"))
    await after.start()  # the other store's requester is gone
    await after.stop()
