"""The permission table: each role's account tries what it must not do, on the real broker,
and RabbitMQ refuses it; what each role needs succeeds (``shoal.roles``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from shoal.broker import connect
from shoal.client.accounts import Rabbitmqctl, ensure_user, remove_user
from shoal.client.main import main
from shoal.executor.heartbeat import Busy, start_heartbeat
from shoal.executor.settings import ExecutorSettings
from shoal.names import (
    API_QUEUE,
    BLOBS_KEY,
    CLAIMS_KEY,
    CLAIMS_QUEUE,
    COMPUTE_QUEUE,
    CONTROL_EXCHANGE,
    DIRECT_REPLY_TO,
    EVENTS_EXCHANGE,
    FLEET_EXCHANGE,
    HEARTBEATS_QUEUE,
    RECORDER_QUEUE,
    REQUESTS_EXCHANGE,
    SUBMIT_QUEUE,
    WASM_COMPUTE_QUEUE,
    event_key,
)
from shoal.topology import declare, declare_executor
from shoal.wire import Heartbeat, decode

from .accounts import Accounts, role_accounts

pytestmark = pytest.mark.rabbitmq

ROLES: dict[str, Any] = {
    "requester": "requester",
    "executor": "executor",
    "operator": "operator",
    "alice": "client",
    "bob": "client",
}

Action = Callable[[AbstractChannel, Accounts], Awaitable[object]]


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    """The accounts, and the topology declared by the requester's account (as ``shoal serve
    requester`` does)."""
    with role_accounts(ROLES, tmp_path_factory.mktemp("secrets")) as made:
        asyncio.run(_declare(made.url("requester")))
        yield made


async def _declare(url: str) -> None:
    connection = await connect(url)
    try:
        await declare(await connection.channel())
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def channel_of(url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aiormq.connect(url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


async def publish(
    channel: AbstractChannel, exchange: str, key: str, user_id: str | None = None
) -> object:
    return await channel.basic_publish(
        b"{}",
        exchange=exchange,
        routing_key=key,
        properties=Basic.Properties(user_id=user_id),
    )


async def bind_private(channel: AbstractChannel, exchange: str, key: str) -> None:
    declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
    await channel.queue_bind(str(declared.queue), exchange, routing_key=key)


async def _noop(_: Any) -> None:
    return None


def consume(queue: str) -> Action:
    return lambda ch, _: ch.basic_consume(queue, _noop)


REFUSED: dict[str, tuple[str, Action]] = {
    "client consumes shoal.submit": ("alice", consume(SUBMIT_QUEUE)),
    "client consumes shoal.compute": ("alice", consume(COMPUTE_QUEUE)),
    "client consumes shoal.recorder": ("alice", consume(RECORDER_QUEUE)),
    "client consumes shoal.api": ("alice", consume(API_QUEUE)),
    "client publishes to the default exchange (straight into shoal.compute)": (
        "alice",
        lambda ch, _: publish(ch, "", COMPUTE_QUEUE),
    ),
    "client publishes to shoal.events": (
        "alice",
        lambda ch, a: publish(ch, EVENTS_EXCHANGE, event_key(a.users["alice"], "j-1", "state")),
    ),
    "client publishes to shoal.control": ("alice", lambda ch, _: publish(ch, CONTROL_EXCHANGE, "")),
    "client binds another user's job events": (
        "alice",
        lambda ch, a: bind_private(ch, EVENTS_EXCHANGE, event_key(a.users["bob"], "*", "*")),
    ),
    "client binds every job's events": (
        "alice",
        lambda ch, _: bind_private(ch, EVENTS_EXCHANGE, "job.#"),
    ),
    "client binds one job's events under any owner": (
        "alice",
        lambda ch, _: bind_private(ch, EVENTS_EXCHANGE, event_key("*", "j-1", "*")),
    ),
    "client binds to shoal.control": (
        "alice",
        lambda ch, _: bind_private(ch, CONTROL_EXCHANGE, ""),
    ),
    "client submits as another user": (
        "alice",
        lambda ch, a: publish(ch, REQUESTS_EXCHANGE, SUBMIT_QUEUE, user_id=a.users["bob"]),
    ),
    "client deletes shoal.submit": ("alice", lambda ch, _: ch.queue_delete(SUBMIT_QUEUE)),
    "client consumes shoal.claims": ("alice", consume(CLAIMS_QUEUE)),
    "client publishes to shoal.fleet (a claim request)": (
        "alice",
        lambda ch, a: publish(ch, FLEET_EXCHANGE, CLAIMS_KEY, user_id=a.users["alice"]),
    ),
    "client claims through shoal.requests": (
        "alice",
        lambda ch, _: ch.queue_bind(CLAIMS_QUEUE, REQUESTS_EXCHANGE, routing_key=CLAIMS_QUEUE),
    ),
    "operator publishes to shoal.fleet": (
        "operator",
        lambda ch, _: publish(ch, FLEET_EXCHANGE, CLAIMS_KEY),
    ),
    "operator consumes shoal.submit": ("operator", consume(SUBMIT_QUEUE)),
    "operator publishes to shoal.events": (
        "operator",
        lambda ch, _: publish(ch, EVENTS_EXCHANGE, "job.x.j-1.state"),
    ),
    "executor consumes shoal.submit": ("executor", consume(SUBMIT_QUEUE)),
    "executor consumes shoal.api": ("executor", consume(API_QUEUE)),
    "executor consumes shoal.recorder": ("executor", consume(RECORDER_QUEUE)),
    "executor consumes shoal.claims": ("executor", consume(CLAIMS_QUEUE)),
    "executor binds shoal.submit to shoal.fleet": (
        "executor",
        lambda ch, _: ch.queue_bind(SUBMIT_QUEUE, FLEET_EXCHANGE, routing_key=SUBMIT_QUEUE),
    ),
    "executor publishes to shoal.requests": (
        "executor",
        lambda ch, _: publish(ch, REQUESTS_EXCHANGE, SUBMIT_QUEUE),
    ),
    "executor publishes to the default exchange (straight into shoal.submit)": (
        "executor",
        lambda ch, _: publish(ch, "", SUBMIT_QUEUE),
    ),
    "executor binds to shoal.events": (
        "executor",
        lambda ch, _: bind_private(ch, EVENTS_EXCHANGE, "job.#"),
    ),
    "executor signs events as the requester": (
        "executor",
        lambda ch, a: publish(ch, EVENTS_EXCHANGE, "job.x.j-1.state", a.users["requester"]),
    ),
    "executor deletes shoal.submit": ("executor", lambda ch, _: ch.queue_delete(SUBMIT_QUEUE)),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_forbidden_action_is_refused_by_the_broker(accounts: Accounts, case: str) -> None:
    name, action = REFUSED[case]
    async with channel_of(accounts.url(name)) as channel:
        with pytest.raises(
            (aiormq.exceptions.ChannelAccessRefused, aiormq.exceptions.ChannelPreconditionFailed)
        ):
            await action(channel, accounts)


async def test_client_submits_reads_replies_and_follows_its_own_jobs(accounts: Accounts) -> None:
    alice = accounts.users["alice"]
    async with channel_of(accounts.url("alice")) as channel:
        await channel.basic_consume(DIRECT_REPLY_TO, _noop, no_ack=True)
        for queue in (SUBMIT_QUEUE, API_QUEUE):
            confirmed = await channel.basic_publish(
                b"{}",
                exchange=REQUESTS_EXCHANGE,
                routing_key=queue,
                properties=Basic.Properties(user_id=alice, reply_to=DIRECT_REPLY_TO),
                mandatory=True,
            )
            assert isinstance(confirmed, Basic.Ack)
        await bind_private(channel, EVENTS_EXCHANGE, event_key(alice, "j-1", "*"))
        await bind_private(channel, EVENTS_EXCHANGE, event_key(alice, "*", "recorded"))


async def test_operator_follows_any_job(accounts: Accounts) -> None:
    async with channel_of(accounts.url("operator")) as channel:
        await bind_private(channel, EVENTS_EXCHANGE, event_key(accounts.users["bob"], "*", "*"))


async def test_executor_declares_consumes_obeys_and_reports(accounts: Accounts) -> None:
    connection = await connect(accounts.url("executor"))
    try:
        channel = await connection.channel()
        topology = await declare_executor(channel, engines=("docker", "wasm", "wasm-python"))
        for queue in topology.queues.values():
            await queue.consume(_noop)
        assert sorted(topology.queues) == [
            COMPUTE_QUEUE,
            "shoal.compute.wasm",
            "shoal.compute.wasm.python",
        ]
        control = await channel.declare_queue(
            "shoal.executor.test-1", exclusive=True, auto_delete=True
        )
        await control.bind(topology.control)
        await topology.events.publish(
            aio_pika.Message(b"{}", user_id=accounts.users["executor"]),
            routing_key=event_key("someone", "j-1", "state"),
        )
        other = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await other.declare_queue("shoal.executor.gone", passive=True)
    finally:
        await connection.close()


@pytest.mark.parametrize(("key", "queue"), [(CLAIMS_KEY, CLAIMS_QUEUE), (BLOBS_KEY, API_QUEUE)])
async def test_executor_sends_a_claim_and_reads_the_direct_reply(
    accounts: Accounts, key: str, queue: str
) -> None:
    """The executor's account publishes a signed claim to ``shoal.fleet`` (routed to
    ``shoal.claims``; a blob fetch, key ``blobs``, to ``shoal.api``) and receives the answer
    on direct reply-to, with no read permission on any queue but its own."""
    executor = accounts.users["executor"]
    async with channel_of(accounts.url("executor")) as channel:
        declaring = await connect(accounts.url("executor"))
        try:
            topology = await declare_executor(await declaring.channel(), claims=True)
            assert topology.fleet is not None
        finally:
            await declaring.close()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_reply(message: Any) -> None:
            replies.put_nowait(message.body)

        await channel.basic_consume(DIRECT_REPLY_TO, on_reply, no_ack=True)
        async with channel_of(accounts.url("requester")) as requester:
            await requester.queue_purge(queue)  # requests other tests left unanswered
        confirmed = await channel.basic_publish(
            b"{}",
            exchange=FLEET_EXCHANGE,
            routing_key=key,
            properties=Basic.Properties(user_id=executor, reply_to=DIRECT_REPLY_TO),
            mandatory=True,
        )
        assert isinstance(confirmed, Basic.Ack)
        async with channel_of(accounts.url("requester")) as requester:
            got = await requester.basic_get(queue, no_ack=True)
            assert got.header.properties.user_id == executor
            reply_to = got.header.properties.reply_to
            assert reply_to is not None
            await requester.basic_publish(b"answer", routing_key=reply_to)
        assert await asyncio.wait_for(replies.get(), 10) == b"answer"


async def test_executor_heartbeats_reach_the_requesters_signed(accounts: Accounts) -> None:
    """The executor's account declares ``shoal.fleet`` and publishes its heartbeats there;
    they reach ``shoal.heartbeats`` signed with its ``user_id``."""
    settings = ExecutorSettings(broker_url=accounts.url("executor"), heartbeat_every=0.2)
    connection = await connect(accounts.url("executor"))
    beating = start_heartbeat(
        connection,
        settings,
        "exec-1",
        ("docker",),
        lambda: Busy(["j-1"], {WASM_COMPUTE_QUEUE: 1}, False),
    )
    try:
        async with channel_of(accounts.url("requester")) as requester, asyncio.timeout(10):
            while True:
                got = await requester.basic_get(HEARTBEATS_QUEUE, no_ack=True)
                if isinstance(got.delivery, Basic.GetOk):
                    break
                await asyncio.sleep(0.1)  # the next beat is on its way
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        await connection.close()
    assert got.header.properties.user_id == accounts.users["executor"]
    heartbeat = decode(got.body, Heartbeat)
    assert (heartbeat.node_id, heartbeat.running, heartbeat.held) == ("exec-1", ["j-1"], 1)
    assert heartbeat.held_by_queue == {WASM_COMPUTE_QUEUE: 1}


def test_password_files_are_private_and_setup_is_idempotent(
    accounts: Accounts, tmp_path: Path
) -> None:
    ctl = Rabbitmqctl()
    user = f"{accounts.users['bob']}-again"
    try:
        first = ensure_user(ctl, accounts.vhost, user, "client", tmp_path)
        password = first.read_text()
        assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
        again = ensure_user(ctl, accounts.vhost, user, "client", tmp_path)
        assert again.read_text() == password
    finally:
        assert remove_user(ctl, user, tmp_path)
    assert not first.exists()


def test_broker_add_and_remove_user_commands(
    accounts: Accounts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = f"{accounts.users['alice']}-cli"
    where = ["--vhost", accounts.vhost, "--secrets", str(tmp_path)]
    assert main(["broker", "add-user", user, "--operator", *where]) == 0
    assert (tmp_path / f"{user}.password").exists()
    assert main(["broker", "remove-user", user, "--secrets", str(tmp_path)]) == 0
    assert main(["broker", "add-user", "a.b", *where]) == 2
    out, err = capsys.readouterr()
    assert f"{user}: password in {tmp_path / user}.password" in out
    assert f"{user}: removed" in out
    assert "UsageError: user name 'a.b'" in err
