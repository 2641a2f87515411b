"""Channels renewed after the broker refuses a confirm (``shoal.broker.Renewal``), on the real
broker: a publish that may survive, the executor's event sink and its claims. Each refusal
here comes from a full queue (``tests.refusing``) where the message goes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from structlog.testing import capture_logs

from shoal.broker import Renewal, connect, publish
from shoal.errors import UnavailableError
from shoal.executor.claims import AmqpClaimTransport
from shoal.executor.events import AmqpEventSink
from shoal.names import CLAIMS_KEY, EVENTS_EXCHANGE
from shoal.topology import declare_executor, declare_fleet
from shoal.wire import ClaimRequest, ControlMessage, JobEvent, decode
from tests.refusing import refusing_queue, room_later

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def connection(private_broker_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect(private_broker_url)
    yield connection
    await connection.close()


def event(seq: int) -> JobEvent:
    return JobEvent(job_id="j-sink", owner="guest", executor="x", seq=seq, kind="log", data="hi")


async def test_a_refused_event_is_sent_again_on_a_fresh_channel(
    connection: AbstractRobustConnection,
) -> None:
    await declare_executor(await connection.channel())  # as the executor does before its sink
    sink = await AmqpEventSink.open(connection, "guest", survive=10)
    queue = await refusing_queue(await connection.channel())
    await queue.bind(EVENTS_EXCHANGE, routing_key=event(1).routing_key)
    await sink.publish(event(1))
    room = room_later(queue)
    with capture_logs() as logs:
        await sink.publish(event(2))  # refused while the queue is full, then sent
    await room
    assert "broker.channel_renewed" in [e["event"] for e in logs]
    message = await queue.get()
    assert JobEvent.model_validate_json(message.body).seq == 2
    await sink.publish(event(3))  # the renewed channel keeps serving


async def test_a_refused_claim_is_unavailable_and_renews_the_channel(
    connection: AbstractRobustConnection,
) -> None:
    side = await connection.channel()
    fleet = await declare_fleet(side)
    queue = await refusing_queue(side)
    await queue.bind(fleet, routing_key=CLAIMS_KEY)
    await fleet.publish(aio_pika.Message(b"filler"), routing_key=CLAIMS_KEY)
    channel = await connection.channel(publisher_confirms=True)
    transport = AmqpClaimTransport(channel, 2.0, "guest")
    await transport.start()
    before = await channel.get_underlay_channel()
    request = ClaimRequest(op="renew", executor="x", lease=30, items=[])
    with capture_logs() as logs, pytest.raises(UnavailableError, match="claim request"):
        await transport.call(request)
    assert "broker.channel_renewed" in [e["event"] for e in logs]
    assert await channel.get_underlay_channel() is not before


async def test_a_refused_confirm_renews_the_channel_before_the_next_try(
    connection: AbstractRobustConnection,
) -> None:
    queue = await refusing_queue(await connection.channel())
    channel = await connection.channel()
    before = await channel.get_underlay_channel()
    exchange = channel.default_exchange
    await publish(exchange, queue.name, ControlMessage(job_id="j-1"))
    room = room_later(queue)
    with capture_logs() as logs:
        await publish(
            exchange,
            queue.name,
            ControlMessage(job_id="j-2"),
            survive=10,
            renew=Renewal(channel, every=60),
        )
    await room
    renewed = [e for e in logs if e["event"] == "broker.channel_renewed"]
    assert len(renewed) == 1  # once, however many tries were refused within a minute
    assert await channel.get_underlay_channel() is not before
    message = await queue.get()
    assert decode(message.body, ControlMessage).job_id == "j-2"
