"""``shoal exec`` preparation: argv semantics, flags, templates (the anchor's table, fixed)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shoal.client.prepare import ExecOptions, prepare_job, split_argv
from shoal.errors import CodeArchiveError, TemplateError, UnknownJobTypeError, UsageError
from shoal.inline import open_inline
from shoal.model import Job


def prepare(before: list[str], after: list[str] = (), **flags: Any) -> Job:  # type: ignore[assignment]
    job_type, arguments, variables = split_argv(before, list(after))
    options = ExecOptions(job_type=job_type, arguments=arguments, variables=variables, **flags)
    return prepare_job(options)


def params(job: Job) -> dict[str, Any]:
    return job.task.engine.params


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text("print('hello')\n")
    return path


def test_unknown_type_lists_supported_sorted() -> None:
    with pytest.raises(
        UnknownJobTypeError, match="unknown job type 'ruby'; supported types: duckdb, python"
    ):
        prepare(["ruby"])


def test_missing_type() -> None:
    with pytest.raises(UsageError, match="missing job type"):
        prepare([])


def test_type_lookup_is_case_insensitive() -> None:
    assert params(prepare(["PyThOn"], ["python", "x.py"]))["command"] == "python"


def test_version_variable_and_quoted_argument_stays_one_item() -> None:
    job = prepare(["python", "--version=3.10"], ["-c", "import this"])
    assert params(job) == {
        "version": "3.10",
        "runtime": "docker",
        "command": "python",
        "arguments": ["-c", "import this"],
    }


def test_default_version() -> None:
    assert params(prepare(["python"], ["python", "app.py"]))["version"] == "3.11"


def test_duckdb_query_with_spaces_is_one_argv_item() -> None:
    job = prepare(["duckdb", "select * from t.csv"])
    assert params(job)["arguments"] == ["select * from t.csv"]


def test_words_before_and_after_dashes_are_joined_verbatim() -> None:
    job = prepare(["duckdb", "db.duckdb", "-"], ["--not-ours", "-c", "'quoted' \"x\"", "$HOME"])
    assert params(job)["arguments"] == [
        "db.duckdb", "-", "--not-ours", "-c", "'quoted' \"x\"", "$HOME",
    ]  # fmt: skip


@pytest.mark.parametrize("word", ["--verbose", "-v", "-c", "-1"])
def test_unknown_flag_before_dashes_is_refused_not_an_argument(word: str) -> None:
    with pytest.raises(UsageError, match=f"unknown option {word}: put the program's own flags"):
        prepare(["python", word], ["python", "app.py"])


def test_unknown_template_variable_is_refused() -> None:
    with pytest.raises(TemplateError, match="job type duckdb has no option --version"):
        prepare(["duckdb", "--version=1"])


def test_name_with_quotes_cannot_break_the_json() -> None:
    job = prepare(["python"], ["python", "a.py"], name='a"b},{"x')
    assert job.name == 'a"b},{"x'


def test_code_file_goes_to_code_slash_name(app: Path) -> None:
    job = prepare(["python"], ["python", "app.py"], code=str(app))
    (code,) = job.task.inputs
    assert (code.alias, code.target, code.source.type) == ("code", "/code/app.py", "inline")
    with open_inline(code.source.params["data"]) as tar:
        assert tar.getnames() == ["app.py"]
        assert tar.extractfile("app.py").read() == b"print('hello')\n"  # type: ignore[union-attr]


def test_code_dir_goes_to_code(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "main.py").write_text("x = 1\n")
    job = prepare(["python"], ["python", "pkg/main.py"], code=str(tmp_path))
    assert job.task.inputs[0].target == "/code"
    assert job.task.inputs[0].source.params["kind"] == "dir"


def test_inputs_plus_code(app: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    job = prepare(
        ["python"],
        ["python", "app.py"],
        code=str(app),
        inputs=[
            f"src={data},dst=/inputs/data.csv",
            "src=https://example.org/x.csv?a=1,2,dst=/inputs/x.csv",
            "file:///srv/shared/ref.parquet",
        ],
    )
    got = [(i.alias, i.target, i.source.type) for i in job.task.inputs]
    assert got == [
        ("code", "/code/app.py", "inline"),
        (None, "/inputs/data.csv", "inline"),
        (None, "/inputs/x.csv", "url"),
        (None, "/inputs/ref.parquet", "local"),
    ]
    assert job.task.inputs[2].source.params["url"] == "https://example.org/x.csv?a=1,2"


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        ("src={data},dst=/inputs/a.csv", "/inputs/a.csv"),
        ("src={data},dest=/inputs/a.csv", "/inputs/a.csv"),  # Bacalhau's spelling
        ("source={data},destination=/inputs/a.csv", "/inputs/a.csv"),
        ("src={data},target=/inputs/a.csv", "/inputs/a.csv"),
        ("{data},dst=/inputs/a.csv", "/inputs/a.csv"),  # a bare path, then keys
        ("{data}", "/inputs/d,1.csv"),  # a comma in a file name
        ("src={data}", "/inputs/d,1.csv"),
    ],
)
def test_input_forms(tmp_path: Path, spec: str, target: str) -> None:
    data = tmp_path / "d,1.csv"
    data.write_text("a\n")
    [given] = prepare(["python"], ["python", "a.py"], inputs=[spec.format(data=data)]).task.inputs
    assert given.target == target


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("src=a.csv,dset=/inputs/a.csv", "unknown key 'dset'; use src=PATH|URL"),
        ("src=s3://b/k,opt=region=eu", "unknown key 'opt'"),
        ("from=a.csv", "unknown key 'from'"),
        ("src=a.csv,src=b.csv", "src= given twice"),
        ("dst=/inputs/a", "missing src=PATH|URL"),
    ],
)
def test_bad_input_forms_name_the_accepted_ones(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        prepare(["python"], ["python", "a.py"], inputs=[spec])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"inputs": ["dst=/x"]}, "missing src"),
        ({"inputs": ["src=s3://b/k"]}, "unsupported scheme"),
        ({"outputs": ["nocolon"]}, "expected name:/path"),
        ({"env": ["NOVALUE"]}, "expected NAME=value"),
        ({"labels": ["x"]}, "expected key=value"),
        ({"timeout": "soon"}, "--timeout: invalid duration"),
        ({"memory": "lots"}, "--memory: invalid memory size"),
        ({"cpu": "fast"}, "--cpu: invalid CPU amount"),
        ({"network": "none", "domains": ["pypi.org"]}, "--domain needs --network http"),
        ({"outputs": ["res:relative"]}, "must be an absolute path"),
        ({"retries": "many"}, "--retries: expected a whole number from 0 to 10"),
        ({"retries": "11"}, "--retries: expected a whole number from 0 to 10"),
        ({"retries": "2", "retry_on": "oom"}, "--retry-on: expected a list of lost, engine"),
        ({"retries": "2", "retry_backoff": "soon"}, "--retry-backoff: invalid duration"),
        ({"retry_on": "exit"}, "--retry-on and --retry-backoff need --retries N"),
    ],
)
def test_bad_flags_get_one_clear_line(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        prepare(["python"], ["python", "a.py"], **flags)


def test_every_flag_takes_effect() -> None:
    job = prepare(
        ["python"],
        ["python", "a.py"],
        outputs=["res:/results"],
        env=["A=1", "B=x=y"],
        labels=["team=data"],
        timeout="90s",
        cpu="500m",
        memory="1Gi",
        domains=["example.org"],
        name="nightly",
    )
    task = job.task
    assert [(o.name, o.path) for o in task.outputs] == [
        ("outputs", "/outputs"),
        ("res", "/results"),
    ]
    assert task.env == {"A": "1", "B": "x=y"}
    assert job.labels == {"job-type": "python", "team": "data"}
    assert task.timeouts.execution == 90.0
    assert (task.resources.cpu, task.resources.memory) == (0.5, 1024**3)
    assert task.network is not None
    assert (task.network.type, task.network.domains) == ("http", ["example.org"])
    assert job.name == "nightly"


def test_code_over_the_limit_names_size_and_limit(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for i in range(3):
        (big / f"blob{i}").write_bytes(b"\0" * (4 * 1024 * 1024))
    with pytest.raises(CodeArchiveError, match=r"is 12\.0 MiB; the limit .* is 10\.0 MiB in total"):
        prepare(["python"], ["python", "a.py"], code=str(big))


def test_limit_is_on_the_total_of_code_and_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"\0" * (6 * 1024 * 1024))
    (tmp_path / "b").write_bytes(b"\0" * (6 * 1024 * 1024))
    with pytest.raises(CodeArchiveError, match="limit"):
        prepare(["python"], ["python", "a"], code=str(tmp_path / "a"), inputs=[str(tmp_path / "b")])


def test_dry_run_json_is_a_valid_job(app: Path) -> None:
    job = prepare(["python"], ["python", "app.py"], code=str(app))
    again = Job.model_validate(json.loads(job.model_dump_json()))
    assert again == job
    assert base64.b64decode(again.task.inputs[0].source.params["data"])


def test_operator_template_dir_adds_a_type(tmp_path: Path) -> None:
    (tmp_path / "Shell.tpl").write_text(
        '{"name": {{ name }}, "tasks": [{"engine": {"type": "docker", "params": '
        '{"image": {{ image | default("busybox") | string }}, "parameters": {{ arguments }}}}}]}'
    )
    options = ExecOptions(job_type="shell", arguments=["echo", "hi"], variables={"image": "alpine"})
    job = prepare_job(options, [tmp_path])
    assert job.task.engine.params["image"] == "alpine"
    assert job.task.engine.params["parameters"] == ["echo", "hi"]


def test_broken_template_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "bad.tpl").write_text('{"name": {{ name }}, "tasks": [')
    with pytest.raises(TemplateError, match="did not render valid JSON"):
        prepare_job(ExecOptions(job_type="bad"), [tmp_path])


def test_template_needing_a_variable_says_which(tmp_path: Path) -> None:
    (tmp_path / "needs.tpl").write_text('{"name": {{ name }}, "x": {{ region }}, "tasks": []}')
    with pytest.raises(TemplateError, match="needs a value: 'region' is undefined"):
        prepare_job(ExecOptions(job_type="needs"), [tmp_path])


def test_retry_flags_make_the_policy() -> None:
    job = prepare(["python"], ["a.py"], retries="3", retry_on="engine, exit", retry_backoff="10m")
    policy = job.task.retries
    assert (policy.attempts, policy.on, policy.backoff, policy.backoff_max) == (
        3,
        ["engine", "exit"],
        600.0,
        600.0,
    )
    assert prepare(["python"], ["a.py"]).task.retries.attempts == 0


@pytest.mark.parametrize("variable", ["name", "command", "arguments"])
def test_a_variable_shoal_exec_sets_itself_is_refused_not_dropped(variable: str) -> None:
    with pytest.raises(TemplateError, match=f"--{variable}=... is set by shoal exec itself"):
        prepare(["python", f"--{variable}=mine", "app.py"])


@pytest.mark.parametrize(
    ("before", "flags"),
    [
        (["python", "--version=\udcff", "app.py"], {}),
        (["python", "app\udcff.py"], {}),
        (["python", "app.py"], {"env": ["A=\udcff"]}),
        (["python", "app.py"], {"name": "\udcff"}),
    ],
)
def test_argv_bytes_that_are_not_utf8_are_a_usage_error(
    before: list[str], flags: dict[str, Any]
) -> None:
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        prepare(before, **flags)
