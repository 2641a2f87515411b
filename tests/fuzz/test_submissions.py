"""Submissions as the requester receives them: every body is a typed refusal or a valid job.

``shoal.requester.submissions.prepare`` (limits → parse → admission → access → translate) is called
directly, without a broker, for one user.
A refusal must be a ``ShoalError`` whose reply encodes and comes back as the same type; an
accepted job must be native and survive the wire and the store unchanged (``NaN`` or an
infinite number would not).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import ShoalError, from_wire
from shoal.model import NATIVE_ENGINES, Job
from shoal.requester.access import Access
from shoal.requester.admission import DEFAULT_MAX_JOB_MEMORY
from shoal.requester.store import NewJob
from shoal.requester.submissions import accept, prepare
from shoal.requester.translate.registry import TranslatorRegistry, default_registry
from shoal.wire import (
    MAX_BATCH_JOBS,
    SCHEMA_VERSION,
    ComputeRequest,
    SubmitReply,
    WireError,
    decode,
    encode,
    read_batch,
)
from tests.core.strategies import jobs
from tests.fuzz.jsonvalues import dumps, json_values, mutated
from tests.fuzz.profiles import fuzz

REGISTRY: TranslatorRegistry = default_registry()
ACCESS = Access(requester="shoal-requester")
OWNER = "alice"

_TRANSLATED = {
    "python": {"command": "python", "arguments": ["main.py"], "version": "3.11"},
    "duckdb": {"command": "duckdb", "arguments": ["-c", "select 1"]},
}


def _documents() -> st.SearchStrategy[dict[str, Any]]:
    """Valid submissions as JSON documents: native jobs and jobs of the built-in types."""

    def as_submission(job: Job, key: str | None, job_type: str | None) -> dict[str, Any]:
        data = job.model_dump(mode="json")
        resources = data["tasks"][0]["resources"]
        resources["gpu"] = 0  # the cluster runs no GPU jobs (shoal.requester.admission)
        if resources["memory"] is not None:
            resources["memory"] = min(resources["memory"], DEFAULT_MAX_JOB_MEMORY)
        engine = data["tasks"][0]["engine"]
        if job_type is not None or engine["type"] != "docker":
            job_type = job_type or "python"
            data["tasks"][0]["engine"] = {"type": job_type, "params": _TRANSLATED[job_type]}
        return {"schema_version": SCHEMA_VERSION, "job": data, "idempotency_key": key}

    return st.builds(
        as_submission,
        jobs,
        st.one_of(st.none(), st.text(max_size=8)),
        st.one_of(st.none(), st.sampled_from(sorted(_TRANSLATED))),
    )


def _check(body: bytes) -> None:
    """The contract of ``prepare`` for one body."""
    try:
        accepted = prepare(body, REGISTRY, OWNER, ACCESS)
    except ShoalError as error:
        _check_refusal(error)
        return
    _check_accepted(accepted)


def _check_refusal(error: ShoalError) -> None:
    message = str(error)
    assert message
    assert "\n" not in message, f"not a one-line error: {message!r}"
    reply = decode(encode(SubmitReply(error=WireError.of(error))), SubmitReply)
    assert reply.error is not None
    again = from_wire(reply.error.model_dump())
    assert type(again) is type(error)
    assert str(again) == message


def _check_accepted(accepted: NewJob) -> None:
    runnable = accepted.runnable
    assert runnable.engine_type in NATIVE_ENGINES
    request = ComputeRequest(job=runnable)
    assert decode(encode(request), ComputeRequest) == request
    for job in (accepted.original, runnable):
        assert Job.model_validate_json(job.model_dump_json()) == job


@fuzz(weight=2)
@given(st.binary(max_size=512))
def test_random_bytes_are_refused_with_a_typed_error(body: bytes) -> None:
    _check(body)


@fuzz(weight=2)
@given(json_values)
def test_random_json_is_refused_or_valid(value: Any) -> None:
    _check(dumps(value))
    _check(dumps({"schema_version": SCHEMA_VERSION, "job": value}))


@fuzz()
@given(_documents())
def test_valid_submissions_are_accepted(document: dict[str, Any]) -> None:
    accepted = prepare(dumps(document), REGISTRY, OWNER, ACCESS)
    _check_accepted(accepted)


@fuzz(weight=2)
@given(_documents().flatmap(mutated))
def test_near_valid_submissions_are_refused_or_valid(document: Any) -> None:
    _check(dumps(document))


def _check_batch(body: bytes) -> None:
    """The contract of ``read_batch`` then ``accept`` for one body: a one-line refusal of
    the whole body, or one result per submission, each accepted or refused alone."""
    try:
        submissions = read_batch(body)
    except ShoalError as error:
        _check_refusal(error)
        return
    assert 1 <= len(submissions) <= MAX_BATCH_JOBS
    for submission in submissions:
        if isinstance(submission, ShoalError):
            _check_refusal(submission)
            continue
        try:
            accepted = accept(submission, REGISTRY, OWNER, ACCESS)
        except ShoalError as error:
            _check_refusal(error)
        else:
            _check_accepted(accepted)


@fuzz(weight=2)
@given(st.binary(max_size=512))
def test_random_bytes_as_a_batch_are_refused_with_a_typed_error(body: bytes) -> None:
    _check_batch(body)


@fuzz(weight=2)
@given(st.lists(st.one_of(json_values, _documents(), _documents().flatmap(mutated)), max_size=4))
def test_batches_of_near_valid_submissions_are_read_one_by_one(items: list[Any]) -> None:
    _check_batch(dumps({"schema_version": SCHEMA_VERSION, "submissions": items}))
    _check_batch(dumps(items))
