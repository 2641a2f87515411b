"""Job types that used to misbehave quietly, and submissions refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoal.images import PYTHON_VERSIONS

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]


def names_under(root: Path) -> list[str]:
    """Every file and folder name below ``root``."""
    return [path.name for path in root.rglob("*")]


async def test_duckdb_query_as_the_only_argument_prints_its_result(
    system: System, tmp_path: Path
) -> None:
    """Bacalhau's example form: the query runs in memory, no database file is left."""
    done = await system.shoal(
        "exec", "duckdb", "select 42 as answer", "--id-only", "--wait"
    )  # fmt: skip
    assert done.code == 0, done.err
    job_id = done.out.strip()
    logs = (await system.shoal("job", "logs", job_id)).out
    assert "answer" in logs
    assert "│     42 │" in logs
    await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path))
    left = names_under(tmp_path)
    assert not [name for name in left if "select" in name], left


async def test_no_requirements_log_without_dependencies(system: System, tmp_path: Path) -> None:
    code = tmp_path / "app.py"
    code.write_text("open('/outputs/result.txt', 'w').write('done')\n")
    done = await system.shoal(
        "exec", "python", "--code", str(code), "--id-only", "--wait", "--", "python", "app.py"
    )  # fmt: skip
    assert done.code == 0, done.err
    got = await system.shoal("job", "get", done.out.strip(), "--output-dir", str(tmp_path / "o"))
    assert got.code == 0, got.err
    assert names_under(tmp_path / "o") == ["outputs", "result.txt"]


async def test_python_version_without_an_image_is_refused_listing_the_supported(
    system: System,
) -> None:
    done = await system.shoal("exec", "python", "--version=3.12", "--", "python", "-V")
    assert done.code == 2
    assert done.err == (
        "TranslationError: python version '3.12' is not supported; supported versions: "
        f"{', '.join(PYTHON_VERSIONS)} (those with a runtime image)\n"
    )


async def test_memory_over_what_executors_give_is_refused(system: System) -> None:
    done = await system.shoal("exec", "python", "--memory", "100Gi", "--", "python", "-V")
    assert done.code == 2
    assert done.err == (
        "UnsupportedError: the job asks for 100.0 GiB of memory; executors give a job at most "
        "4.0 GiB (SHOAL_MAX_JOB_MEMORY)\n"
    )


async def test_idempotency_key_same_spec_same_job_other_spec_conflict(system: System) -> None:
    argv = ("exec", "python", "--idempotency-key", "nightly", "--id-only", "--", "-c")
    first = await system.shoal(*argv, "print(1)")
    again = await system.shoal(*argv, "print(1)")
    assert first.code == again.code == 0, (first.err, again.err)
    assert again.out == first.out
    other = await system.shoal(*argv, "print(2)")
    assert other.code == 2
    assert other.out == ""
    assert other.err == (
        f"IdempotencyConflictError: idempotency key 'nightly' already names job "
        f"{first.out.strip()}, submitted with a different spec; resubmit that spec to get the "
        "job, or use a new key\n"
    )
    described = await system.shoal("job", "describe", first.out.strip(), "--output-format", "json")
    assert json.loads(described.out)["original"]["tasks"][0]["engine"]["params"]["arguments"] == [
        "-c",
        "print(1)",
    ]
