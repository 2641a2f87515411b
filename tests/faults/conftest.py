"""Fixtures of the fault suite: a private vhost, a cluster per test, the session's figures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.services import rabbit_vhost

from .cluster import Cluster
from .figures import Figures


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    """The session's figures, written to ``SHOAL_FAULTS_REPORT`` at its end."""
    collected = Figures()
    yield collected
    collected.write()


@pytest.fixture
def vhost_url() -> Iterator[str]:
    """A private vhost for one case (a case's leftovers never reach the next)."""
    with rabbit_vhost() as url:
        yield url


@pytest.fixture
async def cluster(vhost_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster on the case's vhost; every service still running is stopped at the end."""
    made = Cluster(vhost_url, tmp_path)
    try:
        yield made
    finally:
        await made.shutdown()
        await made.clear_leftovers()
