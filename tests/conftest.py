"""Fixtures shared by every test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.services import rabbit_vhost


@pytest.fixture(scope="session")
def private_broker_url() -> Iterator[str]:
    """This session's own broker: a private vhost, deleted at the end of the session.

    ``SHOAL_TEST_BROKER_URL`` overrides it (used as is, nothing is made or deleted): a
    broker where ``rabbitmqctl`` cannot run, or one the caller keeps for inspection.
    """
    override = os.environ.get("SHOAL_TEST_BROKER_URL")
    if override:
        yield override
        return
    with rabbit_vhost() as url:
        yield url
