"""Fixtures and Hypothesis settings shared by every test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.services import rabbit_vhost

# Every property test runs under this profile unless its own settings say otherwise: no
# per-example deadline and no too-slow health check, both of which measure wall time and so
# fail a correct test on a cold or loaded machine (a hang is caught by pytest-timeout).
settings.register_profile("shoal", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shoal")


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
