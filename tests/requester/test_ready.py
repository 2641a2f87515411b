"""A requester's ``/readyz`` follows its broker connection: 503 while the broker is away
(aio-pika's robust connection is not "closed" then), 200 again once it has reconnected and
consumes again; ``/livez`` answers throughout, asking nothing of the broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from tests.client.cutting_proxy import cutting_proxy
from tests.readiness import (
    port_in,
    ready_through_an_outage,
    upstream_of,
    via_port,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]


async def test_readyz_is_503_while_the_broker_is_away_and_200_once_back(
    amqp_url: str,
    connection: AbstractRobustConnection,
    requester_settings: RequesterSettings,
    tmp_path: Path,
) -> None:
    port_file = tmp_path / "run" / "metrics-port"
    async with cutting_proxy(upstream_of(amqp_url), cut_at=0) as proxy:
        settings = requester_settings.model_copy(
            update={
                "broker_url": SecretStr(via_port(amqp_url, proxy.port)),
                "reconnect_interval": 0.2,
                "metrics_port": "auto",
                "metrics_port_file": port_file,
            }
        )
        requester = Requester(settings)
        await requester.start()
        try:
            await ready_through_an_outage(port_in(port_file), proxy)
        finally:
            proxy.come_back()  # a requester stops cleanly only with its broker there
            await requester.stop()
    assert not port_file.exists()
