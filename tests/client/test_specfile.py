"""Job spec files: parsed as YAML or JSON, submitted fields dropped, every problem named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoal.client.specfile import read_spec
from shoal.errors import InvalidJobError, TooLargeError, UsageError
from shoal.limits import MAX_SUBMISSION_BYTES

DOCKER_JOB = {"tasks": [{"engine": {"type": "docker", "params": {"image": "busybox"}}}]}


def test_yaml_and_json_give_the_same_job(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps(DOCKER_JOB))
    (tmp_path / "job.yaml").write_text(
        "tasks:\n  - engine:\n      type: docker\n      params: {image: busybox}\n"
    )
    from_json = read_spec(str(tmp_path / "job.json"))
    from_yaml = read_spec(str(tmp_path / "job.yaml"))
    assert from_json.tasks == from_yaml.tasks


def test_submitted_fields_are_dropped_so_each_run_is_a_new_job(tmp_path: Path) -> None:
    spec = {**DOCKER_JOB, "id": "j-00000000-0000-4000-8000-000000000000", "owner": "mallory"}
    spec |= {"state": "completed", "created_at": "2020-01-01T00:00:00Z"}
    (tmp_path / "job.json").write_text(json.dumps(spec))
    first, second = (read_spec(str(tmp_path / "job.json")) for _ in range(2))
    assert first.id != second.id
    assert first.id != spec["id"]
    assert first.owner == ""
    assert first.state == "pending"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "job.yaml: a job spec is a mapping (tasks: ...), got list"),
        ("", "job.yaml: a job spec is a mapping (tasks: ...), got nothing"),
        ("tasks: [\n", "job.yaml: not YAML or JSON at line 2, column 1"),
        ("name: x\n", "job.yaml: invalid job: tasks: field required"),
        (
            "tasks:\n  - engine: {type: docker, params: {}}\n    timeouts: {execution: -1}\n",
            "job.yaml: invalid job: tasks[0].timeouts.execution",
        ),
    ],
)
def test_a_bad_spec_names_the_file_and_the_field(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("job.yaml").write_text(text)
    with pytest.raises(InvalidJobError) as raised:
        read_spec("job.yaml")
    assert raised.value.message.startswith(message), raised.value.message
    assert "\n" not in raised.value.message


def test_missing_folder_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_spec(str(tmp_path / "absent.yaml"))
    with pytest.raises(UsageError, match="is a folder"):
        read_spec(str(tmp_path))
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_SUBMISSION_BYTES + 1))
    with pytest.raises(TooLargeError):
        read_spec(str(big))


def test_a_batch_labels_every_job_and_derives_one_idempotency_key_per_line() -> None:
    from shoal.client.batch import labelled
    from shoal.client.submit import member_key
    from shoal.model import parse_job

    jobs = labelled([parse_job(DOCKER_JOB), parse_job({**DOCKER_JOB, "labels": {"a": "b"}})], "b-1")
    assert [j.labels for j in jobs] == [{"batch": "b-1"}, {"a": "b", "batch": "b-1"}]
    assert [member_key("nightly", i) for i in range(2)] == ["nightly:0", "nightly:1"]
    assert [member_key(None, i) for i in range(2)] == [None, None]
