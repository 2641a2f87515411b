"""``shoal job-types`` and ``shoal exec --help`` against a running requester: the job types
the cluster translates, and a local template without a translator refused at ``exec``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

RUBY = """{#- Ruby scripts (no translator anywhere: a submission is refused). -#}
{"name": {{ name }}, "tasks": [{"engine": {"type": "ruby", "params":
  {"command": {{ command }}, "arguments": {{ arguments }}, "gems": {{ gems | default("") }}}}}]}
"""


@pytest.fixture
def system_env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "ruby.tpl").write_text(RUBY)
    return {"SHOAL_TEMPLATE_DIRS": str(folder)}


async def test_job_types_come_from_the_requester(system: System) -> None:
    done = await system.shoal("job-types", "--output-format", "json")
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    assert answer["source"] == "cluster"
    assert done.err == ""
    kinds = {kind["name"]: kind for kind in answer["job_types"]}
    assert set(kinds) >= {"python", "duckdb"}
    assert kinds["python"]["engine"] == "docker"
    runtime, version = kinds["python"]["options"]
    assert (runtime["name"], runtime["default"]) == ("runtime", "docker")
    assert runtime["choices"] == ["docker", "wasm"]
    assert version["name"] == "version"
    assert version["default"] == "3.11"
    assert {"3.11", "3.15"} <= set(version["choices"])
    assert answer["untranslated"] == ["ruby"]

    table = await system.shoal("job-types")
    assert table.out.splitlines()[0].split() == ["TYPE", "ENGINE", "OPTIONS", "DESCRIPTION"]
    assert "templates without a translator (refused if submitted): ruby" in table.err


async def test_exec_help_lists_what_the_cluster_runs(system: System) -> None:
    done = await system.shoal("exec", "--help")
    assert done.code == 0, done.err
    assert "Job types the cluster runs" in done.out
    assert "--version=3.11" in done.out
    assert "--runtime=docker (docker|wasm)" in " ".join(done.out.split())


async def test_a_template_without_a_translator_is_refused_at_exec(system: System) -> None:
    done = await system.shoal("exec", "ruby", "--", "ruby", "-e", "puts 1")
    assert done.code == 2
    assert done.err.startswith("UnknownJobTypeError: "), done.err
    listed = await system.shoal("job", "list", "--output-format", "json")
    assert json.loads(listed.out)["jobs"] == []  # nothing was accepted
