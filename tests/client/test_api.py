"""The public Python API without a cluster: cheap lazy exports, ``exec_job`` building what
``shoal exec`` builds, and the errors of a client that is closed or cannot connect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.errors import UnavailableError, UnknownJobTypeError, UsageError

ROOT = Path(__file__).resolve().parents[2]
SPEC_ONLY = ("id", "created_at")


def test_import_shoal_loads_no_client_code_until_a_name_is_used() -> None:
    probe = (
        "import sys, shoal\n"
        "print(sorted(m for m in sys.modules if m.startswith(('shoal.client', 'aiormq'))))\n"
        "shoal.Client\n"
        "print('shoal.client.sync_api' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["[]", "True"]


def test_the_api_names_are_exported_and_unknown_ones_are_attribute_errors() -> None:
    from shoal.client.api import AsyncClient
    from shoal.client.sync_api import Client

    assert shoal.Client is Client
    assert shoal.AsyncClient is AsyncClient
    assert {"Client", "AsyncClient", "exec_job", "LogChunk"} <= set(dir(shoal))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = shoal.nothing  # type: ignore[attr-defined]


def _spec(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in SPEC_ONLY}


def test_exec_job_builds_the_job_of_shoal_exec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    job = shoal.exec_job(
        "python",
        ["python", "app.py", "/inputs/data.csv"],
        code="app.py",
        inputs=["data.csv", "src=https://example.com/x.csv,dst=/inputs/x.csv"],
        outputs={"plots": "/plots"},
        env={"MODE": "fast"},
        labels={"team": "data"},
        variables={"version": "3.11"},
        name="squares",
        timeout=600,
        cpu=0.5,
        memory="256Mi",
        network="http",
        domains=["example.com"],
        retries=2,
        retry_on=["lost", "exit"],
        template_dirs=[],
    )
    argv = [
        "--code=app.py",
        "-i",
        "data.csv",
        "-i",
        "src=https://example.com/x.csv,dst=/inputs/x.csv",
        "-o",
        "plots:/plots",
        "-e",
        "MODE=fast",
        "-l",
        "team=data",
        "--name",
        "squares",
        "--timeout",
        "600",
        "--cpu",
        "0.5",
        "--memory",
        "256Mi",
        "--network",
        "http",
        "--domain",
        "example.com",
        "--retries",
        "2",
        "--retry-on",
        "lost,exit",
    ]
    command = ["exec", "--dry-run", *argv, "python", "--version=3.11"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal.client.main",
            *command,
            "--",
            "python",
            "app.py",
            "/inputs/data.csv",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert _spec(job.model_dump(mode="json")) == _spec(json.loads(done.stdout))


def test_exec_job_raises_the_errors_of_shoal_exec() -> None:
    with pytest.raises(UnknownJobTypeError, match="supported types: duckdb, python"):
        shoal.exec_job("nosuch", template_dirs=[])
    with pytest.raises(UsageError, match="--timeout"):
        shoal.exec_job("python", ["python"], timeout="soon", template_dirs=[])


def test_a_closed_client_says_how_to_open_it() -> None:
    with pytest.raises(UsageError, match="inside 'with'"):
        shoal.Client().describe("j-1")


def test_a_broker_that_cannot_be_reached_is_unavailable() -> None:
    client = shoal.Client("amqp://guest:guest@127.0.0.1:1/", connect_timeout=2)
    with pytest.raises(UnavailableError), client:
        pass


async def test_an_async_client_outside_async_with_says_how_to_open_it() -> None:
    with pytest.raises(UsageError, match="inside 'async with'"):
        await shoal.AsyncClient().stop("j-1")
