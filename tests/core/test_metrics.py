"""Metrics counted from callbacks, checked without a broker."""

from __future__ import annotations

from aio_pika import RobustConnection
from prometheus_client import REGISTRY
from yarl import URL

from shoal.metrics import count_reconnects


def reconnects() -> float:
    return REGISTRY.get_sample_value("shoal_broker_reconnects_total") or 0.0


async def test_each_reconnection_of_a_robust_connection_is_counted() -> None:
    """Through aio-pika's own callbacks: a rename there would leave the count at zero."""
    connection = RobustConnection(URL("amqp://guest:guest@127.0.0.1:1/"))
    count_reconnects(connection)
    before = reconnects()
    await connection.reconnect_callbacks()
    await connection.reconnect_callbacks()
    assert reconnects() == before + 2
