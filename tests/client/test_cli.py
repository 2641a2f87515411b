"""The ``shoal`` CLI end to end: a subprocess, a real broker, an in-process requester."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.inline import open_inline
from shoal.model import Job, JobState, derived_job_id
from shoal.requester.service import Requester
from shoal.topology import COMPUTE_QUEUE, DEAD_QUEUE
from shoal.wire import ComputeRequest, JobEvent, decode
from tests.requester.amqp import collect
from tests.requester.jobs import tar_gz
from tests.requester.test_submit import queue_depth

from .conftest import Shoal
from .fake_executor import fake_executor

pytestmark = pytest.mark.rabbitmq

RUN = ("exec", "python", "--", "python", "-c", "pass")


def _events(job: Job, *specs: dict[str, object]) -> list[JobEvent]:
    return [
        JobEvent(job_id=job.id, owner=job.owner, executor="ex-1", seq=n, **spec)
        for n, spec in enumerate(specs, start=1)
    ]


def succeed(job: Job) -> list[JobEvent]:
    archive = tar_gz({"answer.txt": b"42\n"})
    return _events(
        job,
        {"kind": "state", "state": JobState.RUNNING},
        {"kind": "log", "stream": "stdout", "data": "hello\n"},
        {"kind": "log", "stream": "stderr", "data": "careful\n"},
        {"kind": "result", "outputs": {"outputs": base64.b64encode(archive).decode()}},
        {"kind": "state", "state": JobState.COMPLETED, "exit_code": 0},
    )


def fail(job: Job) -> list[JobEvent]:
    return _events(
        job,
        {"kind": "state", "state": JobState.RUNNING},
        {"kind": "log", "stream": "stderr", "data": "boom\n"},
        {"kind": "state", "state": JobState.FAILED, "exit_code": 3, "error": "exit status 3"},
    )


async def test_unreachable_broker_is_exit_3(shoal: Shoal) -> None:
    done = await shoal("--broker", "amqp://guest:guest@127.0.0.1:1/", *RUN)
    assert done.code == 3
    [line] = done.err.strip().splitlines()
    assert line.startswith(
        "UnavailableError: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/"
    )


async def test_no_requester_is_exit_3_and_the_submission_expires(
    shoal: Shoal, connection: AbstractRobustConnection
) -> None:
    async with collect(connection, DEAD_QUEUE) as dead:
        done = await shoal(*RUN, SHOAL_RPC_TIMEOUT="1")
        await dead.count(1)
    assert done.code == 3
    assert done.err.strip() == "UnavailableError: no requester answered within 1s; is one running?"


async def test_exec_prints_the_new_id(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    async with collect(connection, COMPUTE_QUEUE) as computed:
        done = await shoal(*RUN[:2], "--id-only", *RUN[2:])
        [message] = await computed.count(1)
    assert done.code == 0, done.err
    job_id = done.out.strip()
    assert decode(message.body, ComputeRequest).job.id == job_id
    original = decode(message.body, ComputeRequest).job.meta["shoal.original_id"]
    assert job_id == derived_job_id(original)
    plain = await shoal(*RUN)
    assert plain.out.startswith("Job ID: j-")
    assert "translated from j-" in plain.out


async def test_code_near_the_limit_crosses_in_many_frames(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    blob = os.urandom(9 * 1024 * 1024)  # incompressible: ~12 MiB of base64 on the wire
    (code / "blob.bin").write_bytes(blob)
    async with collect(connection, COMPUTE_QUEUE) as computed:
        done = await shoal("exec", "python", "--code", str(code), "--id-only", *RUN[2:])
        [message] = await computed.count(1)
    assert done.code == 0, done.err
    [code_input] = decode(message.body, ComputeRequest).job.task.inputs
    with open_inline(code_input.source.params["data"]) as tar:
        member = tar.extractfile("blob.bin")
        assert member is not None
        assert member.read() == blob


async def test_idempotency_key_twice_is_one_job(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    args = (*RUN[:2], "--id-only", "--idempotency-key", "nightly-42", *RUN[2:])
    first, second = await shoal(*args), await shoal(*args)
    assert first.out == second.out
    assert first.code == second.code == 0
    assert await queue_depth(connection, COMPUTE_QUEUE) == 1


async def test_translation_error_is_one_line_exit_2(shoal: Shoal, requester: Requester) -> None:
    done = await shoal("exec", "python", "--version=9.9", "--", "python", "-c", "pass")
    assert done.code == 2
    [line] = done.err.strip().splitlines()
    assert line.startswith("TranslationError: python version '9.9' is not supported")


async def test_follow_streams_logs_and_wait_exits_0(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    async with fake_executor(connection, succeed):
        done = await shoal(*RUN[:2], "--follow", *RUN[2:])
    assert done.code == 0, done.err
    assert done.out.count("hello\n") == 1
    assert "careful\n" in done.err


async def test_wait_on_a_failing_job_exits_with_its_code(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    async with fake_executor(connection, fail):
        done = await shoal(*RUN[:2], "--wait", "--id-only", *RUN[2:])
    assert done.code == 3
    job_id = done.out.strip()
    assert done.err.strip() == f"JobFailedError: job {job_id} failed (exit 3): exit status 3"


async def test_follow_of_a_failing_job_exits_with_its_code(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    """``exec -f`` and, once the job ended, ``job logs -f`` both print its logs and exit with
    its own code, as ``--wait`` does."""
    async with fake_executor(connection, fail):
        followed = await shoal(*RUN[:2], "-f", *RUN[2:])
    assert followed.code == 3, followed.err
    assert "boom\n" in followed.err
    job_id = followed.err.split("JobFailedError: job ", 1)[1].split()[0]
    again = await shoal("job", "logs", "-f", job_id)
    assert again.code == 3, again.err
    assert "boom\n" in again.err
    failed = f"JobFailedError: job {job_id} failed (exit 3): exit status 3"
    assert again.err.strip().endswith(failed)


def lowered(job: Job) -> list[JobEvent]:
    """Run on a node whose maximum is 2 CPUs: the running event says so."""
    note = "cpu 64 → 2 (node maximum)"
    return _events(
        job,
        {"kind": "state", "state": JobState.RUNNING, "lowered": [note]},
        {"kind": "state", "state": JobState.COMPLETED, "exit_code": 0},
    )


async def test_limits_the_executor_lowered_are_said_while_waiting_and_described(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    async with fake_executor(connection, lowered):
        done = await shoal(*RUN[:2], "--wait", "--id-only", "--cpu", "64", *RUN[2:])
    assert done.code == 0, done.err
    job_id = done.out.strip()
    said = "[shoal: limits lowered: cpu 64 → 2 (node maximum)]"
    assert done.err.count(said) == 1, done.err
    human = (await shoal("job", "describe", job_id)).out
    assert "Limits lowered: cpu 64 → 2 (node maximum)" in human.splitlines()


async def test_job_commands(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection, tmp_path: Path
) -> None:
    async with fake_executor(connection, succeed):
        done = await shoal(*RUN[:2], "--wait", "--id-only", "-l", "team=a", *RUN[2:])
    job_id = done.out.strip()
    assert done.code == 0, done.err

    table = await shoal("job", "list")
    header, row = table.out.splitlines()
    assert header.split()[:5] == ["ID", "TYPE", "STATE", "EXIT", "CREATED"]
    assert row.split()[:4] == [job_id, "python", "completed", "0"]
    assert "team=a" in row
    listed = json.loads((await shoal("job", "list", "-l", "team=b", "--output-format", "json")).out)
    assert listed["jobs"] == []

    human = (await shoal("job", "describe", job_id)).out
    assert "State:       completed (exit code 0)" in human
    assert "Type:        python → docker" in human
    record = json.loads((await shoal("job", "describe", job_id, "--output-format", "json")).out)
    assert record["original"]["tasks"][0]["engine"]["type"] == "python"
    assert record["executions"][0]["exit_code"] == 0

    logs = await shoal("job", "logs", job_id)
    assert (logs.out, logs.err) == ("hello\n", "careful\n")

    got = await shoal("job", "get", job_id, "--output-dir", str(tmp_path / "out"))
    assert got.code == 0, got.err
    assert (tmp_path / "out" / "outputs" / "answer.txt").read_bytes() == b"42\n"

    stop = await shoal("job", "stop", job_id)
    assert stop.out.strip() == f"Job {job_id} already ended: completed"

    async with fake_executor(connection, succeed):
        again = await shoal("job", "rerun", job_id, "--wait", "--id-only")
    assert again.code == 0, again.err
    rerun_id = again.out.strip()
    assert rerun_id != job_id
    rerun = json.loads((await shoal("job", "describe", rerun_id, "--output-format", "json")).out)
    assert rerun["labels"] == {**record["labels"], "rerun_of": job_id}
    assert rerun["original"]["tasks"] == record["original"]["tasks"]
    assert rerun["state"] == "completed"

    missing = await shoal("job", "describe", "j-00000000-0000-4000-8000-000000000000")
    assert missing.code == 2
    assert missing.err.startswith("NotFoundError: no job")


async def test_stop_a_queued_job(shoal: Shoal, requester: Requester) -> None:
    job_id = (await shoal(*RUN[:2], "--id-only", *RUN[2:])).out.strip()
    stop = await shoal("job", "stop", job_id)
    assert stop.out.strip() == f"Job {job_id} stopped"
    waited = await shoal("job", "logs", "-f", job_id)
    assert waited.code == 130, "job logs -f exits as --wait does: a stopped job is 130"
    assert waited.err.strip() == f"JobFailedError: job {job_id} stopped: stopped by user"
    got = await shoal("job", "get", job_id)
    assert got.code == 0, "a stopped job has ended: it has no outputs, which is no error"
    assert got.err.strip() == f"Job {job_id} has no outputs"


async def test_get_of_a_job_that_has_not_ended_exits_1(shoal: Shoal, requester: Requester) -> None:
    job_id = (await shoal(*RUN[:2], "--id-only", *RUN[2:])).out.strip()
    got = await shoal("job", "get", job_id)
    assert got.code == 1
    assert got.err.strip() == (
        f"JobNotEndedError: job {job_id} is queued: its outputs come once it ends "
        f"(shoal job wait {job_id})"
    )
