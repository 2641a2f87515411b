"""Jobs that explain how they ended, through the whole system: graceful stops, signals, the
dependency install, outputs left out over the limit, exit codes, and ``job rerun``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.images.support import serve_directory

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

INDEX_HOST = "127.0.0.2"
TRAPS_SIGTERM = """
import pathlib, signal, sys, time

def bye(signum, frame):
    pathlib.Path("/outputs/bye.txt").write_text("got SIGTERM\\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, bye)
print("up", flush=True)
time.sleep(300)
"""
NEEDS_SHOALPROBE = '''"""Needs a package no index has.

pip install shoalprobe
"""
'''


@pytest.fixture
def system_env() -> dict[str, str]:
    return {"SHOAL_JOB_OUTPUT_LIMIT": "1Mi"}


async def describe(system: System, job_id: str) -> dict[str, object]:
    done = await system.shoal("job", "describe", job_id, "--output-format", "json")
    assert done.code == 0, done.err
    record: dict[str, object] = json.loads(done.out)
    return record


async def test_a_stopped_job_runs_its_sigterm_handler_and_get_returns_its_file(
    system: System, tmp_path: Path
) -> None:
    started = await system.shoal(
        "exec", "python", "--network", "none", "--grace", "60s", "--id-only",
        "--", "python", "-c", TRAPS_SIGTERM,
    )  # fmt: skip
    assert started.code == 0, started.err
    job_id = started.out.strip()
    async with system.streaming("job", "logs", "-f", job_id) as follower:
        assert follower.stdout is not None
        async with asyncio.timeout(60):
            assert (await follower.stdout.readline()).decode() == "up\n"
        stopped = await system.shoal("job", "stop", job_id)
        assert stopped.code == 0, stopped.err
        async with asyncio.timeout(60):
            assert await follower.wait() == 130, "job logs -f of a stopped job exits 130"
    got = await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path))
    assert got.code == 0, got.err
    assert (tmp_path / "outputs" / "bye.txt").read_text() == "got SIGTERM\n"
    record = await describe(system, job_id)
    assert (record["state"], record["exit_code"]) == ("stopped", 0)
    assert record["outcome"] == {
        "category": "stopped",
        "message": "stopped by user (ended by SIGTERM: exited with code 0 within the grace)",
        "signal": "SIGTERM",
    }
    human = (await system.shoal("job", "describe", job_id)).out
    assert "Signal:      SIGTERM" in human
    waited = await system.shoal("job", "wait", job_id)
    assert waited.code == 130, waited.err


async def test_a_job_that_kills_itself_with_sigsegv_fails_with_its_signal(system: System) -> None:
    done = await system.shoal(
        "exec", "python", "--network", "none", "--wait", "--id-only",
        "--", "python", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
    )  # fmt: skip
    job_id = done.out.strip()
    assert done.code == 139, done.err
    assert done.err.strip() == f"JobFailedError: job {job_id} failed (exit 139): ended by SIGSEGV"
    human = (await system.shoal("job", "describe", job_id)).out
    assert "Signal:      SIGSEGV" in human


async def test_a_failed_dependency_install_names_the_step_and_its_log(
    system: System, tmp_path: Path
) -> None:
    (tmp_path / "index" / "simple").mkdir(parents=True)
    app = tmp_path / "app.py"
    app.write_text(NEEDS_SHOALPROBE)
    with serve_directory(tmp_path / "index", INDEX_HOST) as base:
        done = await system.shoal(
            "exec", "python", "--code", str(app), "--network", "http", "--domain", INDEX_HOST,
            "-e", f"PIP_INDEX_URL={base}/simple/", "-e", f"PIP_TRUSTED_HOST={INDEX_HOST}",
            "--id-only", "--wait", "--", "python", "app.py",
        )  # fmt: skip
    job_id = done.out.strip()
    assert done.code == 125, done.err
    line = done.err.strip()
    assert line.startswith(
        f"JobFailedError: job {job_id} failed (dependency install): "
        "pip install shoalprobe exited 1: ERROR: "
    ), line
    assert line.endswith(f" — shoal job get {job_id} for requirements.log"), line
    got = await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path / "out"))
    assert got.code == 0, got.err
    log = (tmp_path / "out" / "outputs" / "requirements.log").read_text()
    assert "$ pip install shoalprobe" in log


async def test_outputs_over_the_limit_are_recorded_and_get_exits_1(
    system: System, tmp_path: Path
) -> None:
    done = await system.shoal(
        "exec", "python", "--network", "none", "--wait", "--id-only",
        "--", "python", "-c", "open('/outputs/big.bin', 'wb').write(b'x' * 3 * 1024 * 1024)",
    )  # fmt: skip
    job_id = done.out.strip()
    note = (
        "output 'outputs' (/outputs) left out: more than the 1.0 MiB left of the 1.0 MiB "
        "output limit"
    )
    assert done.code == 125, done.err
    assert done.err.strip() == f"JobFailedError: job {job_id} failed (output too large): {note}"
    record = await describe(system, job_id)
    assert record["left_out"] == [note]
    human = (await system.shoal("job", "describe", job_id)).out
    assert f"Left out:    {note}" in human
    got = await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path))
    assert got.code == 1
    assert got.err.strip() == f"OutputsLeftOutError: job {job_id}: {note}"


async def test_rerun_submits_the_same_spec_as_a_new_linked_job(system: System) -> None:
    first = await system.shoal(
        "exec", "python", "--network", "none", "--wait", "--id-only", "-l", "team=a",
        "--", "python", "-c", "import sys; print('hello', sys.argv[1:])", "x y",
    )  # fmt: skip
    assert first.code == 0, first.err
    job_id = first.out.strip()
    again = await system.shoal("job", "rerun", job_id, "--wait")
    assert again.code == 0, again.err
    [line] = again.out.splitlines()
    assert line.startswith("Job ID: j-")
    rerun_id = line.split()[2]
    assert rerun_id != job_id
    assert (await system.shoal("job", "logs", rerun_id)).out == "hello ['x y']\n"
    old, new = await describe(system, job_id), await describe(system, rerun_id)
    assert new["labels"] == {**old["labels"], "rerun_of": job_id}  # type: ignore[dict-item]
    assert new["engine_spec"] == old["engine_spec"]
    listed = await system.shoal(
        "job", "list", "-l", f"rerun_of={job_id}", "--output-format", "json"
    )
    assert [job["id"] for job in json.loads(listed.out)["jobs"]] == [rerun_id]
