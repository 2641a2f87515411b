"""A broker that is gone or goes away mid-command: every command says so in one line, exit 3."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from shoal.requester.service import Requester

from .conftest import Done, Shoal
from .cutting_proxy import cutting_proxy

pytestmark = pytest.mark.rabbitmq

RUN = ("exec", "python", "--", "python", "-c", "pass")
JOB = "{job}"

COMMANDS: dict[str, tuple[tuple[str, ...], int]] = {
    # name: (argv, the Basic.Publish the connection is cut at: mid-command)
    "exec": (RUN, 1),
    "exec --wait": ((*RUN[:2], "--wait", *RUN[2:]), 2),
    "exec --follow": ((*RUN[:2], "--follow", *RUN[2:]), 3),
    "job list": (("job", "list"), 1),
    "job describe": (("job", "describe", JOB), 1),
    "job logs": (("job", "logs", JOB), 1),
    "job logs -f": (("job", "logs", "-f", JOB), 2),
    "job get": (("job", "get", JOB), 1),
    "job stop": (("job", "stop", JOB), 1),
    "job wait": (("job", "wait", JOB), 2),
    "status": (("status",), 1),
}


def one_unavailable_line(done: Done) -> str:
    """The single line ``done`` wrote on stderr, checked to be exit 3 ``UnavailableError``."""
    assert done.code == 3, (done.out, done.err)
    [line] = done.err.splitlines()
    assert line.startswith("UnavailableError: "), line
    return line


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}"))


@pytest.fixture
async def queued_job(shoal: Shoal, requester: Requester) -> str:
    """A job that stays queued (no executor runs it)."""
    done = await shoal(*RUN[:2], "--id-only", *RUN[2:])
    assert done.code == 0, done.err
    return done.out.strip()


def argv_of(name: str, job_id: str) -> tuple[str, ...]:
    return tuple(word.format(job=job_id) for word in COMMANDS[name][0])


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_closed_port(name: str, shoal: Shoal) -> None:
    argv = argv_of(name, "j-00000000-0000-4000-8000-000000000000")
    done = await shoal("--broker", "amqp://guest:guest@127.0.0.1:1/", *argv)
    line = one_unavailable_line(done)
    assert line.startswith(
        "UnavailableError: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/"
    )


@pytest.mark.parametrize("how", ["drop", "close"])
@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_broker_lost_mid_command(
    name: str, how: str, shoal: Shoal, amqp_url: str, queued_job: str
) -> None:
    upstream = urlsplit(amqp_url)
    cut_at = COMMANDS[name][1]
    target = (upstream.hostname or "127.0.0.1", upstream.port or 5672)
    async with cutting_proxy(target, cut_at, how) as proxy:  # type: ignore[arg-type]
        started = time.monotonic()
        done = await shoal(
            "--broker", with_port(amqp_url, proxy.port), *argv_of(name, queued_job),
            SHOAL_RPC_TIMEOUT="30",
        )  # fmt: skip
        took = time.monotonic() - started
    assert proxy.cut.is_set()
    line = one_unavailable_line(done)
    assert "lost the connection to RabbitMQ" in line
    assert took < 15, "the command noticed the lost connection at once, not at a timeout"


@pytest.mark.parametrize("name", ["exec", "job describe", "job list"])
async def test_several_addresses_use_the_first_that_answers(
    name: str, shoal: Shoal, amqp_url: str, queued_job: str
) -> None:
    """``exec`` takes the blocking path, the others the asyncio session."""
    listed = f"{with_port(amqp_url, 1)}, {amqp_url}"
    done = await shoal("--broker", listed, *argv_of(name, queued_job))
    assert done.code == 0, done.err


async def test_several_addresses_none_answering_names_each(shoal: Shoal) -> None:
    listed = "amqp://guest:secret@127.0.0.1:1/,amqp://guest:secret@127.0.0.1:2/"
    for argv in (RUN, ("job", "list")):
        line = one_unavailable_line(await shoal("--broker", listed, *argv))
        assert line.startswith("UnavailableError: cannot reach RabbitMQ at any of its 2 addresses")
        assert "amqp://guest:***@127.0.0.1:1/: " in line
        assert "amqp://guest:***@127.0.0.1:2/: " in line
        assert "secret" not in line


@pytest.mark.parametrize("how", ["drop", "close"])
async def test_a_wait_moves_to_the_next_address_when_its_connection_breaks(
    how: str, shoal: Shoal, amqp_url: str, queued_job: str
) -> None:
    """``job wait``'s second publish (its first inside the wait) is cut: it carries on through
    the next address and ends when the job is stopped."""
    upstream = urlsplit(amqp_url)
    target = (upstream.hostname or "127.0.0.1", upstream.port or 5672)
    async with cutting_proxy(target, 2, how) as proxy:  # type: ignore[arg-type]
        listed = f"{with_port(amqp_url, proxy.port)},{amqp_url}"
        waiting = asyncio.create_task(shoal("--broker", listed, "job", "wait", queued_job))
        async with asyncio.timeout(30):
            await proxy.cut.wait()
        stopped = await shoal("job", "stop", queued_job)
        assert stopped.code == 0, stopped.err
        done = await waiting
    assert "UnavailableError" not in done.err, done.err
    assert done.code == 130, (done.out, done.err)
