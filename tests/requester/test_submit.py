"""The submission pipeline on a real broker: round trip, idempotency, bad submissions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY

from shoal.images import DEFAULT_PYTHON_VERSION, duckdb_image, python_image
from shoal.inline import inline_source
from shoal.limits import MAX_META_VALUE_BYTES, MiB
from shoal.metrics import SUBMISSIONS
from shoal.model import JobState, derived_job_id
from shoal.requester import submissions
from shoal.requester.admission import IMAGES_TTL
from shoal.requester.framebatch import FrameBatch
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.submissions import idempotent_id
from shoal.topology import COMPUTE_QUEUE, SUBMIT_QUEUE
from shoal.wire import ComputeRequest, Heartbeat, Submission, SubmitReply, decode

from .amqp import Client, collect, collect_dead
from .jobs import docker_job, python_job

pytestmark = pytest.mark.rabbitmq


def submission_counts() -> tuple[float, float, float]:
    """``shoal_submissions_received_total``, then ``shoal_submissions_total`` accepted and
    refused (all reasons), in this process."""
    received = REGISTRY.get_sample_value("shoal_submissions_received_total") or 0.0
    answered = {"accepted": 0.0, "refused": 0.0}
    for metric in SUBMISSIONS.collect():
        for sample in metric.samples:
            if sample.name == "shoal_submissions_total":
                answered[sample.labels["outcome"]] += sample.value
    return received, answered["accepted"], answered["refused"]


async def queue_depth(connection: AbstractRobustConnection, name: str) -> int:
    channel = await connection.channel()
    try:
        queue = await channel.get_queue(name)
        declared = await queue.declare()
        return int(declared.message_count or 0)
    finally:
        await channel.close()


async def test_round_trip_returns_the_translated_id(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    job = python_job("python", "app.py")
    async with collect(connection, COMPUTE_QUEUE) as computed:
        reply = await client.submit(Submission(job=job))
        [message] = await computed.count(1)
    assert reply.error is None
    assert reply.original_id == job.id
    assert reply.job_id == derived_job_id(job.id)
    request = decode(message.body, ComputeRequest)
    assert request.job.id == reply.job_id == message.message_id
    assert request.job.engine_type == "docker"
    assert requester.store is not None
    record = await requester.store.describe(job.id)
    assert record["id"] == reply.job_id
    assert record["state"] == JobState.QUEUED


async def test_native_job_keeps_its_id(requester: Requester, client: Client) -> None:
    job = docker_job()
    reply = await client.submit(Submission(job=job))
    assert reply.job_id == reply.original_id == job.id


async def test_redelivered_submission_is_one_job(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    body = Submission(job=python_job())
    first = await client.submit(body)
    again = await client.submit(body)
    assert first.job_id == again.job_id
    assert await queue_depth(connection, COMPUTE_QUEUE) == 1
    assert requester.store is not None
    assert len(await requester.store.list_jobs(limit=10)) == 1


async def test_idempotency_key_names_the_job(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    replies = await asyncio.gather(
        *(
            client.submit(Submission(job=python_job(), idempotency_key=key))
            for key in ("k1", "k1", "k1", "k2")
        )
    )
    ids = [r.job_id for r in replies]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert replies[0].original_id == idempotent_id("guest", "k1")
    assert await queue_depth(connection, COMPUTE_QUEUE) == 2


async def test_idempotency_key_with_another_spec_is_a_conflict(
    requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    first = await client.submit(Submission(job=python_job("app.py"), idempotency_key="k"))
    again = await client.submit(Submission(job=python_job("app.py"), idempotency_key="k"))
    assert first.error is None
    assert again.job_id == first.job_id, "the same spec (a new ID and time) is the same job"
    other = await client.submit(Submission(job=python_job("other.py"), idempotency_key="k"))
    assert other.job_id is None
    assert other.error is not None
    assert other.error.type == "IdempotencyConflictError"
    assert other.error.message == (
        f"idempotency key 'k' already names job {first.job_id}, submitted with a different "
        "spec; resubmit that spec to get the job, or use a new key"
    )
    labelled = python_job("app.py", labels={"x": "y"})
    assert (await client.submit(Submission(job=labelled, idempotency_key="k"))).error
    assert await queue_depth(connection, COMPUTE_QUEUE) == 1


async def test_idempotency_conflict_within_one_round(
    requester_settings: RequesterSettings, client: Client, connection: AbstractRobustConnection
) -> None:
    """Queued before the requester starts: the first of the key wins, the other is refused;
    once stored, the stored one wins whatever comes first in a round."""

    async def round_of(*argv: str) -> list[SubmitReply]:
        bodies = [Submission(job=python_job(a), idempotency_key="r") for a in argv]
        pending = [await client.send(body) for body in bodies]
        requester = Requester(requester_settings)
        await requester.start()
        try:
            answers = await asyncio.wait_for(asyncio.gather(*(p for p in pending if p)), 20)
        finally:
            await requester.stop()
        return [decode(answer, SubmitReply) for answer in answers]

    first = await round_of("a.py", "b.py", "a.py")
    assert first[0].job_id == first[2].job_id is not None
    assert first[1].error is not None
    assert first[1].error.type == "IdempotencyConflictError"
    second = await round_of("b.py", "a.py")
    assert second[0].error is not None
    assert second[0].error.type == "IdempotencyConflictError"
    assert second[1].job_id == first[0].job_id


def _job_json() -> dict[str, Any]:
    return json.loads(Submission(job=python_job()).model_dump_json())  # type: ignore[no-any-return]


def _with(**changes: Any) -> bytes:
    body = _job_json()
    body.update(changes)
    return json.dumps(body).encode()


def _with_task(**changes: Any) -> bytes:
    body = _job_json()
    body["job"]["tasks"][0].update(changes)
    return json.dumps(body).encode()


def _inline(chars: int) -> list[dict[str, Any]]:
    return [{"source": inline_source("file", "A" * chars), "target": "/code/blob"}]


def _with_engine(engine: dict[str, Any]) -> bytes:
    body = _job_json()
    body["job"]["tasks"][0]["engine"] = engine
    return json.dumps(body).encode()


BAD = {
    "body-over-the-limit": (
        _with_task(inputs=_inline(20 * MiB)),
        "TooLargeError",
        "the submission is 20.0 MiB; the limit is 14.3 MiB",
    ),
    "inline-over-the-limit": (
        _with_task(inputs=_inline(14 * MiB)),
        "TooLargeError",
        "the files sent with the job are 10.5 MiB packed; the limit is 10.0 MiB",
    ),
    "meta-over-the-limit": (
        _with_task(meta={"blob": "m" * (MAX_META_VALUE_BYTES + 1)}),
        "TooLargeError",
        "task meta 'blob' is 65537 bytes; one value may hold at most 65536 bytes",
    ),
    "gpu": (
        _with_task(resources={"gpu": 1}),
        "UnsupportedError",
        "the job asks for 1 GPU(s); no executor here runs GPU jobs (remove resources.gpu)",
    ),
    "memory-over-the-cluster": (
        _with_task(resources={"memory": "100Gi"}),
        "UnsupportedError",
        "the job asks for 100.0 GiB of memory; executors give a job at most 4.0 GiB "
        "(SHOAL_MAX_JOB_MEMORY)",
    ),
    "not-json": (b"{nope", "ProtocolError", "not valid JSON"),
    "schema-version": (_with(schema_version=99), "ProtocolError", "unsupported schema version 99"),
    "invalid-job": (_with(job={"tasks": []}), "ProtocolError", "exactly one task"),
    "unknown-type": (
        _with_engine({"type": "cobol", "params": {"command": "cobol"}}),
        "UnknownJobTypeError",
        "unknown job type 'cobol'; supported types: duckdb, python",
    ),
    "translator-error": (
        _with_engine({"type": "python", "params": {"command": "python", "arguments": []}}),
        "TranslationError",
        "python job has nothing to run",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_submission_gets_an_error_reply(
    kind: str, requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    body, error_type, text = BAD[kind]
    reply = await client.submit(body)
    assert reply.job_id is None
    assert reply.error is not None
    assert reply.error.type == error_type
    assert text in reply.error.message
    assert await queue_depth(connection, COMPUTE_QUEUE) == 0


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_submission_without_reply_to_is_dead_lettered(
    kind: str, requester: Requester, client: Client, connection: AbstractRobustConnection
) -> None:
    body, _, _ = BAD[kind]
    async with collect_dead(connection) as dead:
        await client.send(body, reply=False)
        [message] = await dead.count(1)
    assert message.body == body
    assert await queue_depth(connection, COMPUTE_QUEUE) == 0


async def test_one_round_settles_good_bad_and_repeated_submissions(
    requester_settings: RequesterSettings, client: Client, connection: AbstractRobustConnection
) -> None:
    """Queued before the requester starts, so they arrive together and share rounds."""
    good = [Submission(job=python_job()) for _ in range(30)]
    same_key = [Submission(job=python_job(), idempotency_key="round-key") for _ in range(3)]
    before = submission_counts()
    pending = [await client.send(s) for s in good]
    pending += [await client.send(s) for s in same_key]
    pending += [await client.send(body) for body, _, _ in BAD.values()]
    await client.send(BAD["not-json"][0], reply=False)
    async with (
        collect(connection, COMPUTE_QUEUE) as computed,
        collect_dead(connection) as dead,
    ):
        requester = Requester(requester_settings)
        await requester.start()
        try:
            bodies = await asyncio.wait_for(asyncio.gather(*(p for p in pending if p)), 20)
            await computed.count(31)
            await dead.count(1)
        finally:
            await requester.stop()
    replies = [decode(b, SubmitReply) for b in bodies]
    assert [r.job_id for r in replies[:30]] == [derived_job_id(s.job.id) for s in good]
    key_ids = {r.job_id for r in replies[30:33]}
    assert key_ids == {derived_job_id(idempotent_id("guest", "round-key"))}
    assert [r.error.type if r.error else None for r in replies[33:]] == [
        error_type for _, error_type, _ in BAD.values()
    ]
    assert await queue_depth(connection, COMPUTE_QUEUE) == 0
    assert len(computed.messages) == 31
    assert await queue_depth(connection, SUBMIT_QUEUE) == 0
    received, accepted, refused = (n - b for n, b in zip(submission_counts(), before, strict=True))
    assert received == len(pending) + 1
    assert (accepted, refused) == (33, len(BAD) + 1)


async def test_unexpected_error_reading_a_submission_is_answered(
    requester: Requester,
    client: Client,
    connection: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(submissions, "prepare", broken)
    reply = await client.submit(Submission(job=python_job()))
    assert reply.error is not None
    assert reply.error.type == "ProtocolError"
    assert "could not read this submission: RuntimeError" in reply.error.message
    async with collect_dead(connection) as dead:
        await client.send(Submission(job=python_job()), reply=False)
        await dead.count(1)


async def test_failed_compute_publish_is_retried_until_it_lands(
    requester: Requester,
    client: Client,
    connection: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first publish goes to a queue that does not exist (returned by the broker); the
    submission is requeued, and its redelivery publishes the job."""
    wrong = iter(["shoal.no-such-queue"])
    real_publish = FrameBatch.publish

    def publish(self: FrameBatch, routing_key: str, *args: Any, **kwargs: Any) -> Any:
        if routing_key == COMPUTE_QUEUE:
            routing_key = next(wrong, routing_key)
        return real_publish(self, routing_key, *args, **kwargs)

    monkeypatch.setattr(FrameBatch, "publish", publish)
    job = python_job()
    async with collect(connection, COMPUTE_QUEUE) as computed:
        reply = await client.submit(Submission(job=job), deadline=15)
        [message] = await computed.count(1)
    assert reply.job_id == derived_job_id(job.id) == message.message_id
    assert requester.store is not None
    assert (await requester.store.describe(job.id))["state"] == JobState.QUEUED


async def test_a_runtime_image_no_live_executor_holds_is_refused(
    requester: Requester, client: Client
) -> None:
    assert requester.store is not None
    accepted = await client.submit(Submission(job=python_job()))
    assert accepted.error is None, "no executor says which images it holds: the job waits"
    await requester.store.record_heartbeat(
        Heartbeat(
            node_id="exec-a", role="executor", engines=["docker"], images=[duckdb_image()],
            interval=10,
        )
    )  # fmt: skip
    await asyncio.sleep(IMAGES_TTL)
    reply = await client.submit(Submission(job=python_job()))
    assert reply.error is not None
    assert reply.error.type == "UnsupportedError"
    image = python_image(DEFAULT_PYTHON_VERSION)
    assert reply.error.message == (
        f"no executor alive holds the runtime image {image} (they hold: {duckdb_image()}); "
        "build it on their nodes with runtime-images/build.sh"
    )
    native = await client.submit(Submission(job=docker_job()))
    assert native.error is None, "an image the operator allows is not a runtime image"
