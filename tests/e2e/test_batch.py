"""``shoal job run --batch``: a JSON Lines file becomes one labelled batch of jobs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]


def python_job(code: str, **extra: object) -> str:
    engine = {
        "type": "python",
        "params": {"version": "3.11", "command": "python", "arguments": ["python", "-c", code]},
    }
    return json.dumps({"tasks": [{"engine": engine}], **extra})


async def wait_all(system: System, batch: str, count: int) -> list[dict[str, object]]:
    async with asyncio.timeout(180):
        while True:
            listed = await system.shoal(
                "job", "list", "-l", f"batch={batch}", "--output-format", "json"
            )
            jobs: list[dict[str, object]] = json.loads(listed.out)["jobs"]
            if len(jobs) >= count and all(
                j["state"] in ("completed", "failed", "stopped") for j in jobs
            ):
                return jobs
            await asyncio.sleep(1)


async def test_a_batch_of_twenty_runs_and_is_listed_by_its_label(
    system: System, tmp_path: Path
) -> None:
    batch_file = tmp_path / "jobs.jsonl"
    lines = [python_job(f"print({n} * {n})", name=f"square-{n}") for n in range(20)]
    batch_file.write_text("# twenty squares\n" + "\n".join(lines) + "\n")
    done = await system.shoal("job", "run", "--batch", str(batch_file))
    assert done.code == 0, done.err
    batch, *ids = done.out.split()
    assert batch.startswith("b-")
    assert len(ids) == len(set(ids)) == 20
    waited = await system.shoal("job", "wait", "--batch", batch)
    assert waited.code == 0, waited.err
    assert waited.err.splitlines()[-1] == f"batch {batch}: 20/20 ended (20 completed)"
    listed = await system.shoal("job", "list", "--batch", batch, "-q")
    assert sorted(listed.out.split()) == sorted(ids)
    logs = await system.shoal("job", "logs", ids[7])
    assert logs.out == "49\n"


async def test_waiting_for_a_batch_with_a_failed_job_exits_1(
    system: System, tmp_path: Path
) -> None:
    batch_file = tmp_path / "jobs.jsonl"
    codes = ["pass", "raise SystemExit(3)", "import time; time.sleep(120)"]
    batch_file.write_text("\n".join(python_job(code) for code in codes) + "\n")
    done = await system.shoal("job", "run", "--batch", str(batch_file))
    assert done.code == 0, done.err
    batch, *ids = done.out.split()
    timed_out = await system.shoal("job", "wait", "--batch", batch, "--wait-timeout", "2s")
    assert timed_out.code == 124
    assert timed_out.err.splitlines()[-1].startswith(
        f"WaitTimeoutError: gave up waiting after 2s for batch {batch}"
    )
    stopped = await system.shoal("job", "stop", ids[2])
    assert stopped.code == 0, stopped.err
    waited = await system.shoal("job", "wait", "--batch", batch)
    assert waited.code == 1
    assert waited.err.splitlines()[-1] == (
        f"JobFailedError: batch {batch}: 1 failed, 1 stopped of 3 jobs; "
        f"shoal job list -l batch={batch} --state failed shows them"
    )
    unknown = await system.shoal("job", "wait", "--batch", "b-000000000000")
    assert unknown.code == 2
    assert unknown.err == "NotFoundError: no jobs in batch b-000000000000\n"


async def test_bad_lines_refuse_the_whole_file_and_a_refused_job_not_the_others(
    system: System, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(python_job("print(1)") + "\n" + '{"tasks": []}\n' + "[1]\n")
    refused = await system.shoal("job", "run", "--batch", str(bad))
    assert refused.code == 2
    assert refused.out == ""
    assert refused.err.splitlines() == [
        "line 2: invalid job: tasks: a job has exactly one task, got 0",
        "line 3: a batch line is one JSON object (a job spec)",
        f"InvalidJobError: {bad}: 2 bad line(s) of 3; nothing was submitted",
    ]
    listed = await system.shoal("job", "list", "--output-format", "json")
    assert json.loads(listed.out)["jobs"] == []

    mixed = tmp_path / "mixed.jsonl"
    unknown = json.dumps({"tasks": [{"engine": {"type": "cobol", "params": {}}}]})
    mixed.write_text("\n".join([python_job("print(1)"), unknown, python_job("print(2)")]))
    done = await system.shoal("job", "run", "--batch", str(mixed))
    assert done.code == 2
    batch, *ids = done.out.split()
    assert len(ids) == 2
    assert done.err.splitlines()[0].startswith("line 2: UnknownJobTypeError: ")
    assert done.err.splitlines()[-1] == (
        f"UsageError: 1 of 3 jobs of batch {batch} were not submitted"
    )
    jobs = await wait_all(system, batch, 2)
    assert sorted(str(j["id"]) for j in jobs) == sorted(ids)


async def test_each_fans_out_one_job_per_matching_file(system: System, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for n in range(20):
        (data / f"part-{n:02d}.csv").write_text("value\n" + "1\n" * n)
    (data / "notes.txt").write_text("not matched\n")
    code = tmp_path / "count.py"
    code.write_text("import sys\nprint(sys.argv[1], sum(1 for _ in open(sys.argv[1])) - 1)\n")
    done = await system.shoal(
        "exec", "python", "--code", str(code), "--each", str(data / "*.csv"),
        "--", "python", "count.py", "{}",
    )  # fmt: skip
    assert done.code == 0, done.err
    batch, *ids = done.out.split()
    assert len(ids) == 20
    jobs = await wait_all(system, batch, 20)
    assert {j["state"] for j in jobs} == {"completed"}
    for n in (0, 13, 19):
        logs = await system.shoal("job", "logs", ids[n])
        assert logs.out == f"/inputs/part-{n:02d}.csv {n}\n"
