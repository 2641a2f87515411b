"""Logs reach a pipe byte for byte, a last line without a newline included."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.model import Job, JobState
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.wire import JobEvent

from .conftest import Shoal
from .fake_executor import fake_executor

pytestmark = pytest.mark.rabbitmq

TEXT = "0123456789" * 1000  # no newline at the end


@pytest.fixture
def requester_settings(requester_settings: RequesterSettings) -> RequesterSettings:
    """The suite's requester, keeping logs of this size."""
    return requester_settings.model_copy(update={"log_limit_bytes": 64 * 1024})


def unterminated(job: Job) -> list[JobEvent]:
    specs: list[dict[str, object]] = [
        {"kind": "state", "state": JobState.RUNNING},
        {"kind": "log", "stream": "stdout", "data": TEXT[:4000]},
        {"kind": "log", "stream": "stdout", "data": TEXT[4000:]},
        {"kind": "state", "state": JobState.COMPLETED, "exit_code": 0},
    ]
    return [
        JobEvent(job_id=job.id, executor="ex-1", seq=n, **spec)
        for n, spec in enumerate(specs, start=1)
    ]


async def test_logs_without_a_final_newline_arrive_whole(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> None:
    async with fake_executor(connection, unterminated):
        followed = await shoal("exec", "python", "--follow", "--id-only", "--", "python", "a.py")
    assert followed.code == 0, followed.err
    job_id, printed = followed.out.split("\n", 1)
    assert printed == TEXT
    stored = await shoal("job", "logs", job_id)
    assert stored.out == TEXT
    again = await shoal("job", "logs", "-f", job_id)
    assert again.out == TEXT
