"""The job model: validation messages and JSON round-trips."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings

from shoal.errors import InvalidJobError, ProtocolError
from shoal.model import JOB_ID, Job, derived_job_id, parse_job
from shoal.wire import Submission, decode

from .strategies import jobs


def job_with(**task: Any) -> dict[str, Any]:
    """A minimal job dict whose task has ``task`` merged in."""
    return {"tasks": [{"engine": {"type": "docker", "params": {"image": "x"}}, **task}]}


def url(name: str) -> dict[str, Any]:
    return {"type": "url", "params": {"url": f"https://example.org/{name}"}}


@given(jobs)
@settings(max_examples=150)
def test_json_round_trip_is_identity(job: Job) -> None:
    assert Job.model_validate_json(job.model_dump_json()) == job


def test_relative_target_names_the_field() -> None:
    inputs = [{"source": url("a"), "target": "/a"}, {"source": url("b"), "target": "b"}]
    with pytest.raises(
        InvalidJobError, match=r"tasks\[0\]\.inputs\[1\]\.target: must be an absolute path"
    ):
        parse_job(job_with(inputs=inputs))


@pytest.mark.parametrize("count", [0, 2])
def test_exactly_one_task(count: int) -> None:
    task = job_with()["tasks"][0]
    with pytest.raises(InvalidJobError, match=f"exactly one task, got {count}"):
        parse_job({"tasks": [task] * count})


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            {
                "inputs": [
                    {"source": url("a"), "target": "/x"},
                    {"source": url("b"), "target": "/x"},
                ]
            },
            "duplicate input targets: /x",
        ),
        (
            {
                "inputs": [
                    {"source": url("a"), "alias": "d", "target": "/x"},
                    {"source": url("b"), "alias": "d", "target": "/y"},
                ]
            },
            "duplicate input aliases: d",
        ),
        (
            {"outputs": [{"name": "o", "path": "/a"}, {"name": "o", "path": "/b"}]},
            "duplicate output names: o",
        ),
        (
            {"outputs": [{"name": "a", "path": "/o"}, {"name": "b", "path": "/o/"}]},
            "duplicate output paths: /o",
        ),
        (
            {"inputs": [{"source": {"type": "s3", "params": {}}, "target": "/x"}]},
            "source type 's3'",
        ),
        (
            {
                "inputs": [
                    {"source": {"type": "url", "params": {"url": "ftp://h/x"}}, "target": "/x"}
                ]
            },
            "http",
        ),
        ({"resources": {"memory": "lots"}}, r"tasks\[0\]\.resources\.memory: invalid memory size"),
        ({"timeouts": {"execution": "soon"}}, r"tasks\[0\]\.timeouts\.execution: invalid duration"),
        ({"env": {"1BAD": "x"}}, "not a valid environment variable name"),
        (
            {"network": {"type": "none", "domains": ["pypi.org"]}},
            "only used with network type http",
        ),
        ({"engine": {"type": "docker", "params": {}}}, "engine.params.image: field required"),
        ({"bogus": 1}, r"tasks\[0\]\.bogus: extra inputs are not permitted"),
    ],
)
def test_invalid_tasks_read_like_a_sentence(task: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        parse_job(job_with(**task))


def test_units_become_canonical() -> None:
    job = parse_job(
        job_with(resources={"cpu": "500m", "memory": "512Mi"}, timeouts={"execution": "5m"})
    )
    assert job.task.resources.cpu == 0.5
    assert job.task.resources.memory == 512 * 1024**2
    assert job.task.timeouts.execution == 300.0


def test_default_output_and_no_network_choice() -> None:
    job = parse_job(job_with())
    assert [(o.name, o.path) for o in job.task.outputs] == [("outputs", "/outputs")]
    assert job.task.network is None
    assert JOB_ID.fullmatch(job.id)


def test_job_id_must_look_like_ours() -> None:
    with pytest.raises(InvalidJobError, match="id: must look like j-<uuid4>"):
        parse_job({**job_with(), "id": "42"})


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_job_id("a") == derived_job_id("a") != derived_job_id("b")
    assert JOB_ID.fullmatch(derived_job_id("a"))


def test_not_json() -> None:
    with pytest.raises(InvalidJobError, match="invalid job"):
        parse_job("{nope")


def test_a_path_of_another_type_is_an_invalid_job() -> None:
    output = {"name": "a", "path": {"not": "a path"}}
    task = {"engine": {"type": "docker", "params": {"image": "x"}}, "outputs": [output]}
    with pytest.raises(InvalidJobError, match=r"tasks\[0\]\.outputs\[0\]\.path: must be a string"):
        parse_job({"tasks": [task]})


def test_a_key_with_a_newline_is_quoted_in_one_line() -> None:
    task = {"engine": {"type": "docker", "params": {"image": "x"}}}
    with pytest.raises(InvalidJobError) as caught:
        parse_job({"meta": {"a\nb": 1}, "tasks": [task]})
    assert str(caught.value) == "invalid job: meta['a\\nb']: input should be a valid string"


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("target", "/inputs/../../etc/x", "must not contain '..'"),
        ("target", "inputs/x", "must be an absolute path"),
        ("target", "/", "not / itself"),
        ("target", "/proc/self/x", "must not be under /proc"),
        ("path", "/sys", "must not be under /sys"),
        ("path", "/dev/shm", "must not be under /dev"),
        ("name", "../../x", "must start with a letter or digit"),
        ("name", "/abs/path", "must start with a letter or digit"),
        ("name", "a/b", "hold only"),
        ("name", "x" * 129, "at most 128"),
    ],
)
def test_input_and_output_names_and_paths_stay_in_their_place(
    where: str, value: str, message: str
) -> None:
    inputs = [{"source": url("a"), "target": value if where == "target" else "/inputs/a"}]
    output = {"name": "out", "path": "/outputs"} | ({where: value} if where != "target" else {})
    with pytest.raises(InvalidJobError, match=re.escape(message)):
        parse_job(job_with(inputs=inputs, outputs=[output]))


@pytest.mark.parametrize(
    ("retries", "message"),
    [
        ({"attempts": 11}, r"tasks\[0\]\.retries\.attempts: input should be less than or equal"),
        ({"attempts": -1}, r"tasks\[0\]\.retries\.attempts: input should be greater than"),
        ({"on": ["oom"]}, r"tasks\[0\]\.retries\.on: unknown failure kind oom: use lost, engine"),
        ({"backoff": "soon"}, r"tasks\[0\]\.retries\.backoff: invalid duration"),
        ({"backoff": "1m", "backoff_max": "10s"}, "backoff_max must not be below backoff"),
    ],
)
def test_invalid_retries_say_what_to_fix(retries: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        parse_job(job_with(retries=retries))


def test_retries_default_to_none_and_exits_are_retried_only_when_asked() -> None:
    policy = parse_job(job_with()).task.retries
    assert (policy.attempts, policy.on) == (0, ["lost", "engine"])
    asked = parse_job(job_with(retries={"attempts": 3, "on": ["Exit", "exit"]})).task.retries
    assert asked.on == ["exit"]


def test_retry_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    policy = parse_job(job_with(retries={"backoff": "2s", "backoff_max": "10s"})).task.retries
    assert [policy.delay(n, 0.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]
    assert 10.0 <= policy.delay(9, 0.999) < 12.5


def test_a_job_without_retries_serializes_as_before_they_existed() -> None:
    plain = parse_job(job_with())
    assert "retries" not in plain.model_dump(mode="json")["tasks"][0]
    asked = parse_job(job_with(retries={"attempts": 1}))
    assert asked.model_dump(mode="json")["tasks"][0]["retries"]["attempts"] == 1
    assert parse_job(asked.model_dump_json()) == asked


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_a_non_finite_number_in_a_message_is_refused(constant: str) -> None:
    body = (
        '{"schema_version": 2, "job": {"tasks": [{"engine": {"type": "duckdb", '
        f'"params": {{"command": {constant}, "arguments": ["NaN", "Infinity"]}}}}}}]}}}}'
    ).encode()
    with pytest.raises(ProtocolError, match="NaN or Infinity"):
        decode(body, Submission)
    fine = body.replace(constant.encode(), b'"duckdb"', 1)
    assert decode(fine, Submission).job.tasks[0].engine.params["arguments"] == ["NaN", "Infinity"]
