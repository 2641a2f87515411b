"""The ``shoal`` command as a user runs it: exit codes, one-line errors, dry runs, help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from shoal.model import Job
from shoal.wire import SCHEMA_VERSION


def shoal(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal.client.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_dry_run_prints_a_valid_job(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    done = shoal(
        "exec", "python", "--code", "app.py", "--dry-run", "--", "python", "app.py", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    job = Job.model_validate(json.loads(done.stdout))
    assert job.task.engine.params["arguments"] == ["python", "app.py"]
    assert job.task.inputs[0].target == "/code/app.py"


def test_dry_run_yaml() -> None:
    done = shoal("exec", "duckdb", "--dry-run", "--output-format", "yaml", "--", "-c", "select 1")
    assert done.returncode == 0, done.stderr
    assert "type: duckdb" in done.stdout


def test_unknown_type_exits_2_with_one_line() -> None:
    done = shoal("exec", "ruby")
    assert done.returncode == 2
    assert (
        done.stderr
        == "UnknownJobTypeError: unknown job type 'ruby'; supported types: duckdb, python, wasm\n"
    )


def test_bad_flag_value_exits_2_with_one_line() -> None:
    done = shoal("exec", "python", "--memory", "lots", "--dry-run", "--", "python", "a.py")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("UsageError: --memory: invalid memory size 'lots'")


def test_missing_code_exits_2() -> None:
    done = shoal("exec", "python", "--code", "nope.py", "--dry-run", "--", "python", "nope.py")
    assert done.returncode == 2
    assert "CodeArchiveError: --code nope.py: no such file or directory" in done.stderr


def test_unknown_click_option_value_exits_2() -> None:
    done = shoal("exec", "python", "--network", "sideways", "--dry-run")
    assert done.returncode == 2
    assert "sideways" in done.stderr


@pytest.mark.parametrize("args", [["exec", "--help"], ["--help"]])
def test_help_teaches(args: list[str]) -> None:
    done = shoal(*args)
    assert done.returncode == 0
    if args[0] == "exec":  # asked of the cluster; this installation's when none answers
        assert re.search(r"^Job types (the cluster runs|of this installation)", done.stdout, re.M)
        assert re.search(r"^  duckdb  SQL on the DuckDB CLI", done.stdout, re.M)
        assert re.search(r"^  python  Python code", done.stdout, re.M)
        assert "shoal exec python --code app.py -- python app.py" in done.stdout
        assert "--idempotency-key" in done.stdout
    else:
        assert "Job types: duckdb, python" in done.stdout


def test_help_does_not_import_the_services() -> None:
    code = (
        "import sys; from shoal.client.main import main; "
        "rc = main(['exec', '--help']); "
        "print(sorted(m for m in ('aio_pika', 'aiodocker', 'sqlalchemy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().endswith("[]")


def test_a_label_over_the_limit_is_refused_before_connecting() -> None:
    label = "note=" + "x" * (64 * 1024 + 1)
    done = shoal(
        "--broker", "amqp://guest:guest@127.0.0.1:1/", "exec", "python", "-l", label, "--",
        "python", "-c", "pass",
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "TooLargeError: labels 'note' is 65537 bytes; one value may hold at most 65536 bytes\n"
    )


def test_version_names_the_client_and_its_broker(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[profiles.lab]\nbroker_url = "amqp://me:secret@lab:5672/"\n')
    done = subprocess.run(
        [sys.executable, "-m", "shoal.client.main", "--profile", "lab", "version"],
        capture_output=True,
        text=True,
        env={**os.environ, "SHOAL_CONFIG": str(config)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"shoal {version('shoal')}"
    assert lines[1] == f"wire schema: {SCHEMA_VERSION}"
    assert lines[3] == f"broker: amqp://me:***@lab:5672/ (profile 'lab' in {config})"


def test_shell_completion_as_the_readme_says() -> None:
    script = subprocess.run(
        [sys.executable, "-m", "shoal.client.main"],
        capture_output=True,
        text=True,
        env={**os.environ, "_SHOAL_COMPLETE": "bash_source"},
        timeout=60,
        check=True,
    )
    assert "complete -o nosort -F _shoal_completion shoal" in script.stdout
    words = subprocess.run(
        [sys.executable, "-m", "shoal.client.main"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "_SHOAL_COMPLETE": "bash_complete",
            "COMP_WORDS": "shoal job li",
            "COMP_CWORD": "2",
        },
        timeout=60,
        check=True,
    )
    assert words.stdout.split() == ["plain,list"]


@pytest.mark.parametrize("args", [[], ["job"]])
def test_a_bare_group_prints_its_help(args: list[str]) -> None:
    done = shoal(*args)
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: shoal")
    assert done.stderr == ""
