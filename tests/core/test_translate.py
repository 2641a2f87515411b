"""Translation: python and duckdb to docker, native jobs untouched, typed errors only."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import ShoalError, TranslationError, UnknownJobTypeError
from shoal.images import LAUNCHER_PATH, PYTHON_VERSIONS, duckdb_image, python_image
from shoal.model import Job, JobState, Network, SpecConfig, Task, parse_job
from shoal.requester.translate import (
    Translator,
    TranslatorRegistry,
    builtin_translators,
    default_registry,
    translate_job,
)
from shoal.requester.translate.registry import ENTRY_POINT_GROUP


def job(engine: dict[str, Any], **task: Any) -> Job:
    return parse_job({"tasks": [{"engine": engine, **task}]})


def python(arguments: Any, **params: Any) -> Job:
    return job(
        {"type": "python", "params": {"command": "python", "arguments": arguments, **params}}
    )


REGISTRY = TranslatorRegistry(builtin_translators())


def test_python_runs_the_launcher_with_the_users_argv() -> None:
    submitted = python(["python", "app.py", "--flag", "a b"])
    result = translate_job(submitted, REGISTRY)
    engine = result.runnable.task.engine
    assert engine.type == "docker"
    assert engine.params["image"] == python_image("3.11")
    assert engine.params["entrypoint"] == [LAUNCHER_PATH]
    assert engine.params["parameters"] == ["--", "python", "app.py", "--flag", "a b"]
    assert engine.params["dep_cache"] is True, "declared by the job type, not guessed"


def test_python_version_picks_the_image() -> None:
    runnable = translate_job(python(["-c", "import this"], version="3.11"), REGISTRY).runnable
    assert runnable.task.engine.params["image"] == python_image("3.11")
    assert runnable.task.engine.params["parameters"] == ["--", "-c", "import this"]


@pytest.mark.parametrize("version", ["2.7", "3.12", "3.10"])
def test_python_version_without_an_image_lists_the_supported(version: str) -> None:
    assert version not in PYTHON_VERSIONS
    expected = f"'{version}' is not supported; supported versions: {', '.join(PYTHON_VERSIONS)}"
    with pytest.raises(TranslationError, match=re.escape(expected)):
        translate_job(python(["x"], version=version), REGISTRY)


def test_python_default_network_is_package_indexes_only() -> None:
    network = translate_job(python(["x"]), REGISTRY).runnable.task.network
    assert network is not None
    assert (network.type, network.domains) == ("http", ["pypi.org", "files.pythonhosted.org"])


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ({"type": "none"}, Network(type="none")),
        ({"type": "full"}, Network(type="full")),
        (
            {"type": "http", "domains": ["example.org", "pypi.org"]},
            Network(type="http", domains=["pypi.org", "files.pythonhosted.org", "example.org"]),
        ),
        ({"type": "http"}, Network(type="http", domains=["pypi.org", "files.pythonhosted.org"])),
    ],
)
def test_python_domains_add_to_the_package_indexes(
    network: dict[str, Any], expected: Network
) -> None:
    submitted = job(
        {"type": "python", "params": {"command": "python", "arguments": ["x"]}}, network=network
    )
    assert translate_job(submitted, REGISTRY).runnable.task.network == expected


def test_python_without_argv_says_what_to_type() -> None:
    with pytest.raises(TranslationError, match="give the command after --"):
        translate_job(python([]), REGISTRY)


def test_duckdb_passes_argv_unchanged() -> None:
    argv = ["-c", "select * from 'data.csv' where x = \"y\""]
    runnable = translate_job(
        job({"type": "duckdb", "params": {"command": "duckdb", "arguments": argv}}), REGISTRY
    ).runnable
    assert runnable.task.engine.params["image"] == duckdb_image()
    assert runnable.task.engine.params["entrypoint"] == ["duckdb"]
    assert runnable.task.engine.params["parameters"] == argv


def duckdb_argv(argv: list[str]) -> list[str]:
    engine = {"type": "duckdb", "params": {"command": "duckdb", "arguments": argv}}
    return list(translate_job(job(engine), REGISTRY).runnable.task.engine.params["parameters"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["select 42 as answer"], [":memory:", "select 42 as answer"]),
        (["-json", "SELECT 1; SELECT 2"], ["-json", ":memory:", "SELECT 1; SELECT 2"]),
        (["FROM 'x.csv'", "-csv"], [":memory:", "FROM 'x.csv'", "-csv"]),
        (["  with t as (select 1) from t"], [":memory:", "  with t as (select 1) from t"]),
        (["show;"], [":memory:", "show;"]),
    ],
)
def test_duckdb_query_as_first_word_runs_in_memory(argv: list[str], expected: list[str]) -> None:
    assert duckdb_argv(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["data.db", "select 1"],
        ["-c", "select 1"],
        ["-init", "select 1.sql", "db.duckdb"],
        ["-cmd", "select 1", "-c", "select 2"],
        ["./select 1.db"],
        ["show"],
        ["selection.db", "select 1"],
        [],
    ],
)
def test_duckdb_other_argv_unchanged(argv: list[str]) -> None:
    assert duckdb_argv(argv) == argv


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"arguments": ["x"]}, "no engine.params.command"),
        ({"command": "python", "arguments": "python app.py"}, "must be a list of strings, got str"),
        ({"command": "python", "arguments": [1, 2]}, "must be a list of strings"),
    ],
)
def test_malformed_params_are_typed_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message):
        translate_job(job({"type": "python", "params": params}), REGISTRY)


def test_translation_makes_a_new_linked_job_and_keeps_the_original() -> None:
    submitted = python(["python", "app.py"])
    before = submitted.model_dump()
    result = translate_job(submitted, REGISTRY)
    assert submitted.model_dump() == before  # never mutated
    assert result.translated
    assert result.runnable.id != submitted.id
    assert result.runnable.meta["shoal.original_id"] == submitted.id
    assert result.runnable.meta["shoal.job_type"] == "python"
    assert result.runnable.meta["shoal.translator"].endswith("PythonTranslator")
    assert result.original.id == submitted.id
    assert result.original.state is JobState.TRANSLATED
    assert result.original.meta["shoal.translated_id"] == result.runnable.id
    assert result.original.task == submitted.task


def test_same_submission_same_translated_id() -> None:
    submitted = python(["x"])
    assert (
        translate_job(submitted, REGISTRY).runnable.id
        == translate_job(submitted, REGISTRY).runnable.id
    )


@pytest.mark.parametrize("engine", ["docker", "wasm"])
def test_native_jobs_pass_through_untouched(engine: str) -> None:
    params = {"image": "busybox"} if engine == "docker" else {"module": "x.wasm"}
    submitted = job({"type": engine, "params": params})
    result = translate_job(submitted, REGISTRY)
    assert result.runnable is submitted
    assert not result.translated


def test_mixed_docker_and_duckdb_jobs() -> None:
    jobs = [
        job({"type": "docker", "params": {"image": "busybox", "parameters": ["echo", "hi"]}}),
        job({"type": "duckdb", "params": {"command": "duckdb", "arguments": ["-c", "select 1"]}}),
    ]
    results = [translate_job(j, REGISTRY) for j in jobs]
    assert [r.translated for r in results] == [False, True]
    assert all(r.runnable.task.engine.type == "docker" for r in results)


def test_unknown_type_lists_supported() -> None:
    with pytest.raises(
        UnknownJobTypeError, match="unknown job type 'ruby'; supported types: duckdb, python"
    ):
        translate_job(job({"type": "ruby", "params": {"command": "ruby"}}), REGISTRY)


class Exploding:
    job_type = "boom"

    def translate(self, task: Task) -> Task:
        raise RuntimeError("kaboom")


class NotNative:
    job_type = "lazy"

    def translate(self, task: Task) -> Task:
        return task


def test_a_crashing_translator_becomes_a_typed_error() -> None:
    registry = TranslatorRegistry([Exploding()])
    with pytest.raises(
        TranslationError, match="translator for 'boom' failed: RuntimeError: kaboom"
    ):
        translate_job(job({"type": "boom"}), registry)


def test_a_translator_must_produce_a_native_engine() -> None:
    with pytest.raises(TranslationError, match="produced engine 'lazy'"):
        translate_job(job({"type": "lazy"}), TranslatorRegistry([NotNative()]))


class Unchecked:
    """Builds its task with ``model_copy``, which pydantic does not validate."""

    job_type = "sloppy"

    def translate(self, task: Task) -> Task:
        engine = SpecConfig(type="docker", params={"image": "", "entrypoint": "sh"})
        return task.model_copy(update={"engine": engine})


def test_an_invalid_task_from_a_translator_is_refused_with_its_field() -> None:
    with pytest.raises(TranslationError) as caught:
        translate_job(job({"type": "sloppy"}), TranslatorRegistry([Unchecked()]))
    assert "translator for 'sloppy' produced an invalid job: tasks[0]: engine.params.image" in str(
        caught.value
    )


def test_duplicate_job_types_are_rejected() -> None:
    with pytest.raises(TranslationError, match="duplicate translator for job type 'python'"):
        TranslatorRegistry([*builtin_translators(), *builtin_translators()])


def test_entry_points_add_translators(monkeypatch: pytest.MonkeyPatch) -> None:
    class Entry:
        name = "boom"
        value = "tests:Exploding"

        def load(self) -> type[Translator]:
            return Exploding

    def fake_entry_points(group: str) -> list[Entry]:
        return [Entry()] if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr("shoal.requester.translate.registry.entry_points", fake_entry_points)
    assert default_registry().job_types() == ["boom", "duckdb", "python", "wasm"]


@given(
    job_type=st.sampled_from(["python", "duckdb", "ruby", "docker"]),
    params=st.dictionaries(
        st.sampled_from(["command", "arguments", "version", "image"]),
        st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=3), st.integers()),
    ),
)
@settings(max_examples=200)
def test_translation_raises_only_typed_errors(job_type: str, params: dict[str, Any]) -> None:
    try:
        submitted = Job(tasks=[Task(engine=SpecConfig(type=job_type, params=params))])
    except ValueError:
        return  # not a valid job in the first place (e.g. docker without an image)
    with contextlib.suppress(ShoalError):
        translate_job(submitted, REGISTRY)


@given(
    arguments=st.lists(st.text(max_size=8), min_size=1, max_size=4),
    version=st.sampled_from([None, *PYTHON_VERSIONS, "3.15", "2.7"]),
    runtime=st.sampled_from([None, "docker", "wasm"]),
    network=st.sampled_from(
        [None, {"type": "none"}, {"type": "full"}, {"type": "http", "domains": ["example.com"]}]
    ),
    env=st.dictionaries(st.sampled_from(["A", "B_2"]), st.text(max_size=4), max_size=2),
)
@settings(max_examples=200)
def test_python_tasks_are_valid_as_built(
    arguments: list[str],
    version: str | None,
    runtime: str | None,
    network: dict[str, Any] | None,
    env: dict[str, str],
) -> None:
    """The python translator says ``valid_tasks``: its task validated again is the same."""
    params = {k: v for k, v in (("version", version), ("runtime", runtime)) if v is not None}
    submitted = job(
        {"type": "python", "params": {"command": "python", "arguments": arguments, **params}},
        network=network,
        env=env,
    )
    try:
        runnable = translate_job(submitted, REGISTRY).runnable
    except TranslationError:
        return
    checked = Task.model_validate(runnable.task.model_dump(mode="json"))
    assert checked == runnable.task
    assert checked.model_dump_json() == runnable.task.model_dump_json()


def test_update_sets_fields_as_a_copy_first_would() -> None:
    submitted = python(["python", "app.py"])
    update = {"owner": "alice", "id": "j-11111111-2222-4333-8444-555555555555"}
    direct = translate_job(submitted, REGISTRY, update)
    copied = translate_job(submitted.model_copy(update=update), REGISTRY)
    assert direct.original.model_dump_json() == copied.original.model_dump_json()
    assert direct.runnable.model_dump_json() == copied.runnable.model_dump_json()
    assert direct.runnable.meta["shoal.original_id"] == update["id"]
    assert submitted.owner == ""  # never mutated


def _code(target: str) -> dict[str, Any]:
    data = "H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPgZCwAA//8"
    return {
        "source": {"type": "inline", "params": {"data": data}},
        "alias": "code",
        "target": target,
    }


def wasm(code_target: str | None, **params: Any) -> Job:
    inputs = [_code(code_target)] if code_target else []
    return job(
        {"type": "wasm", "params": {"command": "", "arguments": ["a", "b"], **params}},
        inputs=inputs,
    )


def test_wasm_runs_the_code_file_with_its_arguments() -> None:
    result = translate_job(wasm("/code/count.wasm"), REGISTRY)
    assert result.translated
    assert result.runnable.task.engine.type == "wasm"
    assert result.runnable.task.engine.params == {
        "module": "/code/count.wasm",
        "parameters": ["a", "b"],
        "env": {},
    }


def test_wasm_names_its_module_in_a_code_folder() -> None:
    result = translate_job(wasm("/code", module="bin/tool.wasm"), REGISTRY)
    assert result.runnable.task.engine.params["module"] == "/code/bin/tool.wasm"


@pytest.mark.parametrize(
    ("submitted", "error"),
    [
        (wasm("/code"), "wasm job: --code is a folder; name the module in it with --module"),
        (wasm(None), "wasm job has no module: give it with --code module.wasm"),
        (wasm("/code", module="../etc/x.wasm"), "--module ../etc/x.wasm: give a path inside"),
        (
            job(
                {"type": "wasm", "params": {"command": "", "arguments": []}},
                inputs=[_code("/code/m.wasm")],
                network={"type": "full"},
            ),
            "wasm jobs have no network",
        ),
    ],
)
def test_wasm_refusals_say_what_to_fix(submitted: Job, error: str) -> None:
    with pytest.raises(TranslationError) as refused:
        translate_job(submitted, REGISTRY)
    assert error in refused.value.message


def test_python_on_wasm_runs_the_argv_after_python_with_the_wasm_runtime() -> None:
    result = translate_job(python(["python", "app.py", "x"], runtime="wasm"), REGISTRY)
    task = result.runnable.task
    assert task.engine.type == "wasm"
    assert task.engine.params == {
        "module": "",
        "runtime": "python",
        "parameters": ["app.py", "x"],
        "env": {},
    }
    assert task.network is None


@pytest.mark.parametrize(
    ("submitted", "error"),
    [
        (python(["bash", "run.sh"], runtime="wasm"), "must start with python, not 'bash'"),
        (python(["python", "a.py"], runtime="wasm", version="3.12"), "--version=3.12 needs"),
        (python(["python", "a.py"], runtime="jvm"), "python runtime 'jvm' is not one of"),
        (
            job(
                {
                    "type": "python",
                    "params": {"command": "", "arguments": ["python"], "runtime": "wasm"},
                },
                network={"type": "full"},
            ),
            "python --runtime=wasm has no network",
        ),
    ],
)
def test_python_on_wasm_refusals_say_what_to_fix(submitted: Job, error: str) -> None:
    with pytest.raises(TranslationError) as refused:
        translate_job(submitted, REGISTRY)
    assert error in refused.value.message
