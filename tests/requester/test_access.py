"""Ownership on the real broker, each user with their own account: another user's job is
"not found" to every API op, and job events count only from the executor account that runs
the execution (the forged ``completed exit 0`` of the security review, now refused)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shoal.broker import connect, publish
from shoal.client.session import Session, open_session
from shoal.client.settings import ClientSettings, Secret
from shoal.errors import AccessError, NotFoundError
from shoal.executor.claims import AmqpClaimTransport, Claims
from shoal.model import Job, JobState
from shoal.names import EVENTS_EXCHANGE
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import NewJob
from shoal.wire import JobEvent, Submission
from tests.shared.accounts import Accounts, role_accounts

from .jobs import python_job

pytestmark = pytest.mark.rabbitmq

ROLES: dict[str, Any] = {
    "alice": "client",
    "bob": "client",
    "executor": "executor",
    "other-executor": "executor",
    "rogue": "executor",
}
"""``rogue`` has an executor's broker rights but is not one of the requester's executors."""


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    with role_accounts(ROLES, tmp_path_factory.mktemp("secrets")) as made:
        yield made


@pytest.fixture
async def requester(accounts: Accounts, tmp_path: Path) -> AsyncIterator[Requester]:
    """A requester on guest (the vhost's requester account) trusting two executor accounts."""
    executors = ",".join(accounts.users[n] for n in ("executor", "other-executor"))
    settings = RequesterSettings(
        broker_url=SecretStr(accounts.guest_url),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}",
        executor_users=executors,
        name="requester-access-test",
    )
    running = Requester(settings)
    await running.start()
    yield running
    await running.stop()


def session_of(accounts: Accounts, name: str) -> Any:
    return open_session(ClientSettings(broker_url=Secret(accounts.url(name))))


async def submit(session: Session) -> str:
    reply = await session.submit(Submission(job=python_job()))
    return str(reply.job_id)


async def test_another_users_job_is_not_found(requester: Requester, accounts: Accounts) -> None:
    async with session_of(accounts, "alice") as alice, session_of(accounts, "bob") as bob:
        job_id = await submit(alice)
        record = await alice.api("describe", job_id)
        assert record["owner"] == accounts.users["alice"]
        for op in ("describe", "logs", "get", "stop"):
            with pytest.raises(NotFoundError, match=job_id):
                await bob.api(op, job_id)
        assert [job["id"] for job in await alice.api("list")] == [job_id]
        assert await bob.api("list") == []
        assert (await alice.api("describe", job_id))["state"] == JobState.QUEUED.value


async def test_prefixes_and_pages_consider_only_the_callers_jobs(
    requester: Requester, accounts: Accounts
) -> None:
    def owned(name: str, n: int) -> Job:
        job = python_job().model_copy(update={"owner": accounts.users[name]})
        return job.model_copy(update={"id": f"j-c0ffee0{n}-{job.id[11:]}"})

    mine, theirs = owned("alice", 1), owned("bob", 2)
    assert requester.store is not None
    await requester.store.add_jobs([NewJob(job, job) for job in (mine, theirs)])
    async with session_of(accounts, "alice") as alice, session_of(accounts, "bob") as bob:
        assert (await alice.api("describe", "c0ffee"))["id"] == mine.id
        assert (await bob.api("resolve", "j-c0ffee"))["id"] == theirs.id
        with pytest.raises(NotFoundError, match="no job matches 'c0ffee02'"):
            await alice.api("logs", "c0ffee02")
        page = await alice.api("page", limit=1)
        assert (page["total"], [job["id"] for job in page["jobs"]]) == (1, [mine.id])
        with pytest.raises(NotFoundError, match="to list after"):
            await alice.api("page", after=theirs.id)
        assert (await bob.api("summary"))["total"] == 1


async def test_idempotency_keys_are_per_user(requester: Requester, accounts: Accounts) -> None:
    async with session_of(accounts, "alice") as alice, session_of(accounts, "bob") as bob:
        first = await alice.submit(Submission(job=python_job(), idempotency_key="k"))
        again = await alice.submit(Submission(job=python_job(), idempotency_key="k"))
        theirs = await bob.submit(Submission(job=python_job(), idempotency_key="k"))
    assert first.job_id == again.job_id != theirs.job_id


async def send_event(accounts: Accounts, name: str, event: JobEvent) -> None:
    """Publish ``event`` signed by account ``name`` (its broker-checked ``user_id``)."""
    connection = await connect(accounts.url(name))
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        await publish(exchange, event.routing_key, event, user_id=accounts.users[name])
    finally:
        await connection.close()


def watch(requester: Requester, job_id: str, seq: int) -> asyncio.Event:
    """Set once the recorder committed event ``seq`` of ``job_id`` (watching from now)."""
    assert requester.recorder is not None
    seen = asyncio.Event()

    def observe(event: JobEvent) -> None:
        if event.job_id == job_id and event.seq == seq:
            seen.set()

    requester.recorder.observers.append(observe)
    return seen


async def test_forged_completion_is_refused(requester: Requester, accounts: Accounts) -> None:
    async with session_of(accounts, "alice") as alice:
        job_id = await submit(alice)
        owner = accounts.users["alice"]

        def event(seq: int, **fields: Any) -> JobEvent:
            return JobEvent(job_id=job_id, owner=owner, executor="ex-1", seq=seq, **fields)

        running = watch(requester, job_id, 1)
        await send_event(accounts, "executor", event(1, kind="state", state=JobState.RUNNING))
        await asyncio.wait_for(running.wait(), 15)
        forged = event(9, kind="state", state=JobState.COMPLETED, exit_code=0)
        await send_event(accounts, "rogue", forged)  # not an executor account
        await send_event(accounts, "other-executor", forged)  # does not run this execution
        logged = watch(requester, job_id, 2)
        await send_event(accounts, "executor", event(2, kind="log", data="hi\n"))
        await asyncio.wait_for(logged.wait(), 15)
        record = await alice.api("describe", job_id)
        assert record["state"] == JobState.RUNNING.value
        assert record["exit_code"] is None
        assert [run["state"] for run in record["executions"]] == [JobState.RUNNING.value]


async def claims_of(accounts: Accounts, name: str) -> tuple[Claims, Any]:
    """A claims client signed by account ``name`` (its connection, to close)."""
    connection = await connect(accounts.url(name))
    transport = AmqpClaimTransport(
        await connection.channel(publisher_confirms=True), 10.0, accounts.users[name]
    )
    await transport.start()
    return Claims(transport, f"exec-{name}", lease=30, renew_every=5), connection


async def test_only_executor_accounts_may_claim(requester: Requester, accounts: Accounts) -> None:
    async with session_of(accounts, "alice") as alice:
        job_id = await submit(alice)
    rogue, rogue_connection = await claims_of(accounts, "rogue")
    executor, executor_connection = await claims_of(accounts, "executor")
    try:
        with pytest.raises(AccessError, match="not an executor account"):
            await rogue.claim(job_id)
        assert (await executor.claim(job_id))[0] == "granted"
    finally:
        await rogue_connection.close()
        await executor_connection.close()
