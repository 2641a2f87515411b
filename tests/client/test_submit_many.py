"""``Session.submit_many`` on a real broker: rounds of pipelined publishes, one result per
submission in order, and the errors when nobody can take the submissions."""

from __future__ import annotations

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.client.session import open_session
from shoal.client.settings import ClientSettings, Secret
from shoal.errors import ShoalError, UnavailableError, UnknownJobTypeError
from shoal.model import Job, parse_job
from shoal.names import REQUESTS_EXCHANGE
from shoal.requester.service import Requester
from shoal.wire import Submission, SubmitReply
from tests.requester.jobs import python_job
from tests.services import rabbit_vhost

pytestmark = pytest.mark.rabbitmq

JOBS = 300
WINDOW = 64
BAD = {0, 7, 64, 150, JOBS - 1}
"""Indexes of jobs of a type no translator knows: the first, mid-round, a round's first, the
last."""


def _unknown_type() -> Job:
    return parse_job({"name": "x", "tasks": [{"engine": {"type": "nosuch", "params": {}}}]})


async def test_every_result_comes_back_in_order_across_rounds(
    requester: Requester, connection: AbstractRobustConnection, amqp_url: str
) -> None:
    jobs = [
        _unknown_type() if index in BAD else python_job("python", "-c", f"print({index})")
        for index in range(JOBS)
    ]
    async with open_session(ClientSettings(broker_url=Secret(amqp_url))) as session:
        results = await session.submit_many([Submission(job=job) for job in jobs], WINDOW)
    assert len(results) == JOBS
    for index, (job, result) in enumerate(zip(jobs, results, strict=True)):
        if index in BAD:
            assert isinstance(result, UnknownJobTypeError), (index, result)
        else:
            assert isinstance(result, SubmitReply), (index, result)
            assert result.original_id == job.id
    assert requester.store is not None
    stored = await requester.store.submitted_specs([job.id for job in jobs])
    assert set(stored) == {job.id for index, job in enumerate(jobs) if index not in BAD}


async def test_without_a_requester_every_job_is_unavailable(
    connection: AbstractRobustConnection, amqp_url: str
) -> None:
    settings = ClientSettings(broker_url=Secret(amqp_url), rpc_timeout=0.5)
    async with open_session(settings) as session:
        results = await session.submit_many([Submission(job=python_job()) for _ in range(10)])
    assert all(isinstance(r, UnavailableError) for r in results), results
    assert all("no requester answered" in str(r) for r in results), results


async def test_without_the_submit_queue_every_job_is_unavailable() -> None:
    with rabbit_vhost() as url:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_exchange(REQUESTS_EXCHANGE, aio_pika.ExchangeType.DIRECT)
            async with open_session(ClientSettings(broker_url=Secret(url))) as session:
                results: list[SubmitReply | ShoalError] = await session.submit_many(
                    [Submission(job=python_job()) for _ in range(10)], 4
                )
    assert all(isinstance(r, UnavailableError) for r in results), results
    assert all("does not exist" in str(r) for r in results), results
