"""The README's and ``make demo``'s examples, run through the whole system."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import wasmtime

from tests.images.support import make_tinydep, serve_directory

from .conftest import ROOT, System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

SALES = "src=examples/sales.csv,dst=/inputs/sales.csv"
INDEX_HOST = "127.0.0.2"
APP_WITH_DEPENDENCY = '''"""Needs tinydep.

pip install tinydep==1.0
"""
import tinydep

print(tinydep.VALUE)
'''


async def test_python_example_logs_and_outputs_are_there_when_wait_returns(
    system: System, tmp_path: Path
) -> None:
    done = await system.shoal(
        "exec", "python", "--code", "examples/stats.py", "-i", SALES, "--id-only", "--wait",
        "--", "python", "stats.py", "/inputs/sales.csv",
    )  # fmt: skip
    assert done.code == 0, done.err
    job_id = done.out.strip()
    logs = await system.shoal("job", "logs", job_id)
    assert logs.out.splitlines() == ["east      47.50", "north     60.00", "south     67.50"]
    got = await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path))
    assert got.code == 0, got.err
    summary = json.loads((tmp_path / "outputs" / "summary.json").read_text())
    assert summary == {"east": 47.5, "north": 60.0, "south": 67.5}
    described = await system.shoal("job", "describe", job_id, "--output-format", "json")
    record = json.loads(described.out)
    assert record["state"] == "completed"
    assert record["recorded"] is True
    assert record["original"]["tasks"][0]["engine"]["type"] == "python"
    assert record["engine_spec"]["type"] == "docker"
    [run] = record["executions"]
    assert run["exit_code"] == 0
    assert run["started_at"]
    assert run["ended_at"]


async def test_duckdb_example_with_sql_file_and_query_with_spaces(system: System) -> None:
    done = await system.shoal(
        "exec", "duckdb", "--code", "examples/top_products.sql", "-i", SALES, "--id-only",
        "--wait", "--", "-init", "/code/top_products.sql",
        "-c", "select count(*) AS rows FROM '/inputs/sales.csv'",
    )  # fmt: skip
    assert done.code == 0, done.err
    logs = (await system.shoal("job", "logs", done.out.strip())).out
    assert "gadget" in logs
    assert "80.0" in logs
    assert "│ 6    │" in logs


async def test_failed_job_exits_with_its_code_and_its_last_line(system: System) -> None:
    done = await system.shoal(
        "exec", "python", "--network", "none", "--wait", "--id-only",
        "--", "python", "-c", "import sys; print('bad input', file=sys.stderr); sys.exit(7)",
    )  # fmt: skip
    assert done.code == 7
    job_id = done.out.strip()
    assert done.err.strip() == f"JobFailedError: job {job_id} failed (exit 7): bad input"
    logs = await system.shoal("job", "logs", job_id)
    assert "bad input" in logs.err


async def test_follow_streams_the_logs_as_they_come(system: System) -> None:
    program = (
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.3)\n"
    )
    done = await system.shoal(
        "exec", "python", "--network", "none", "-f", "--", "python", "-c", program
    )  # fmt: skip
    assert done.code == 0, done.err
    assert [line for line in done.out.splitlines() if line.startswith("tick")] == [
        "tick 0",
        "tick 1",
        "tick 2",
    ]


async def test_argv_reaches_the_program_exactly_as_typed(system: System) -> None:
    argv = ["it's", 'say "hi"', "$HOME", "*", "", "a  b"]
    done = await system.shoal(
        "exec", "python", "--network", "none", "--wait", "--id-only",
        "--", "python", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *argv,
    )  # fmt: skip
    assert done.code == 0, done.err
    logs = await system.shoal("job", "logs", done.out.strip())
    assert json.loads(logs.out) == argv


async def test_stop_a_running_job(system: System) -> None:
    started = await system.shoal(
        "exec", "python", "--network", "none", "--id-only",
        "--", "python", "-c", "import time; print('up', flush=True); time.sleep(300)",
    )  # fmt: skip
    job_id = started.out.strip()
    async with system.streaming("job", "logs", "-f", job_id) as follower:
        assert follower.stdout is not None
        async with asyncio.timeout(60):
            assert (await follower.stdout.readline()).decode() == "up\n"
        stopped = await system.shoal("job", "stop", job_id)
        assert stopped.code == 0, stopped.err
        async with asyncio.timeout(60):
            await follower.wait()
    record = json.loads(
        (await system.shoal("job", "describe", job_id, "--output-format", "json")).out
    )
    assert record["state"] == "stopped"
    assert record["recorded"] is True
    assert record["executions"][0]["error"].startswith("stopped")


async def test_bad_input_is_refused_before_anything_runs(system: System) -> None:
    done = await system.shoal("exec", "python", "--version=2.7", "--", "python", "-V")
    assert done.code == 2
    assert done.err.startswith("TranslationError: python version '2.7' is not supported")
    listed = await system.shoal("job", "list")
    assert listed.code == 0, listed.err


async def test_python_dependency_installed_through_the_job_proxy(
    system: System, tmp_path: Path
) -> None:
    """A docstring ``pip install`` reaches a package index only through the executor's
    allow-list proxy. The index listens on this host's 127.0.0.2, which the job cannot reach
    by itself (its own loopback is not the host's, and 127.0.0.1 bypasses the proxy)."""
    make_tinydep(tmp_path / "index" / "simple" / "tinydep")
    app = tmp_path / "app.py"
    app.write_text(APP_WITH_DEPENDENCY)
    with serve_directory(tmp_path / "index", INDEX_HOST) as base:
        done = await system.shoal(
            "exec", "python", "--code", str(app), "--network", "http", "--domain", INDEX_HOST,
            "-e", f"PIP_INDEX_URL={base}/simple/", "-e", f"PIP_TRUSTED_HOST={INDEX_HOST}",
            "--id-only", "--wait", "--", "python", "app.py",
        )  # fmt: skip
    job_id = done.out.strip()
    await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path / "out"))
    log = (tmp_path / "out" / "outputs" / "requirements.log").read_text()
    assert done.code == 0, f"{done.err}\n{log}"
    assert (await system.shoal("job", "logs", job_id)).out == "tinydep-1.0\n"
    assert "pip install tinydep==1.0" in log
    described = await system.shoal("job", "describe", job_id, "--output-format", "json")
    network = json.loads(described.out)["spec"]["tasks"][0]["network"]
    assert network == {
        "type": "http",
        "domains": ["pypi.org", "files.pythonhosted.org", INDEX_HOST],
    }, "--domain adds to the package indexes"


def compiled(example: str, folder: Path) -> Path:
    """The WebAssembly text ``examples/EXAMPLE`` compiled into ``folder``."""
    module = folder / Path(example).with_suffix(".wasm").name
    module.write_bytes(bytes(wasmtime.wat2wasm((ROOT / "examples" / example).read_text())))
    return module


async def test_wasm_example_prints_and_writes_its_greeting(system: System, tmp_path: Path) -> None:
    module = compiled("hello.wat", tmp_path)
    done = await system.shoal("exec", "wasm", "--code", str(module), "--id-only", "--wait")
    assert done.code == 0, done.err
    job_id = done.out.strip()
    assert (await system.shoal("job", "logs", job_id)).out == "hello from WebAssembly\n"
    got = await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path / "got"))
    assert got.code == 0, got.err
    assert (tmp_path / "got" / "outputs" / "hello.txt").read_text() == "hello from WebAssembly\n"


async def test_the_readme_batch_over_a_folder_of_csv_files_runs(
    system: System, tmp_path: Path
) -> None:
    script = ROOT / "examples" / "csv_batch.sh"
    assert script.read_text() in (ROOT / "README.md").read_text()
    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    header, *rows = (ROOT / "examples" / "sales.csv").read_text().splitlines()
    for count in (1, 2, 3):  # the first row, the first two, the first three
        (data / f"sales-{count}.csv").write_text("\n".join([header, *rows[:count]]) + "\n")
    env = {**system.env, "PATH": f"{Path(sys.executable).parent}:{system.env['PATH']}"}
    process = await asyncio.create_subprocess_exec(
        "bash", str(script), str(data), str(results), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(240):
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    batch, *jobs = (results / "jobs.txt").read_text().split()
    assert batch.startswith("b-")
    assert err.decode().splitlines()[-1] == f"batch {batch}: 3/3 ended (3 completed)"
    summaries = [
        json.loads((results / job / "outputs" / "summary.json").read_text()) for job in jobs
    ]
    assert sorted(summaries, key=lambda summary: sum(summary.values())) == [
        {"north": 30.0},
        {"north": 30.0, "south": 17.5},
        {"north": 60.0, "south": 17.5},
    ]
