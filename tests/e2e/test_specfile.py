"""``shoal job run``: what ``exec --dry-run`` prints, submitted back, is the same job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

SALES = "src=examples/sales.csv,dst=/inputs/sales.csv"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
async def test_dry_run_output_submitted_back_is_the_same_job(
    system: System, tmp_path: Path, fmt: str
) -> None:
    printed = await system.shoal(
        "exec", "python", "--code", "examples/stats.py", "-i", SALES, "-l", "team=data",
        "--name", "stats", "--dry-run", "--output-format", fmt,
        "--", "python", "stats.py", "/inputs/sales.csv",
    )  # fmt: skip
    assert printed.code == 0, printed.err
    spec = tmp_path / f"job.{fmt}"
    spec.write_text(printed.out)
    done = await system.shoal("job", "run", str(spec), "--id-only", "--wait")
    assert done.code == 0, done.err
    job_id = done.out.strip()
    described = await system.shoal("job", "describe", job_id, "--output-format", "json")
    record = json.loads(described.out)
    assert record["state"] == "completed"
    dry = json.loads(
        (await system.shoal("job", "run", str(spec), "--dry-run", "--output-format", "json")).out
    )
    original = record["original"]
    for field in ("name", "namespace", "labels", "tasks"):
        assert original[field] == dry[field], field
    assert {k: v for k, v in original["meta"].items() if not k.startswith("shoal.")} == dry["meta"]
    assert original["id"] != dry["id"]
    logs = await system.shoal("job", "logs", job_id)
    assert "east      47.50" in logs.out


async def test_a_bad_spec_is_refused_in_one_line(system: System) -> None:
    bad = await system.shoal("job", "run", "examples/sales.csv")
    assert bad.code == 2
    assert bad.err.startswith("InvalidJobError: examples/sales.csv: "), bad.err
    assert len(bad.err.strip().splitlines()) == 1
