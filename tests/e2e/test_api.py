"""The public Python API against the real system: ``shoal.Client`` and ``shoal.AsyncClient``
submit, wait, read logs and fetch outputs; ``submit_many`` of a few hundred jobs refuses the
bad ones each with its typed error and accepts the rest, results in order."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.errors import (
    InvalidJobError,
    JobFailedError,
    ShoalError,
    TranslationError,
    UnknownJobTypeError,
)

from .conftest import ROOT, System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

MANY = 240
RUN = 3
"""Jobs of the batch left to run to the end; the others are stopped (a 2-core machine)."""
BAD: dict[int, type[ShoalError]] = {
    7: InvalidJobError,
    50: UnknownJobTypeError,
    121: TranslationError,
    239: InvalidJobError,
}


def _sync_scenario(url: str, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("print('hello')\nopen('/outputs/result.txt', 'w').write('done')\n")
    with shoal.Client(url) as client:
        job = shoal.exec_job("python", ["python", "app.py"], code=app, template_dirs=[])
        submitted = client.submit(job)
        assert submitted.original_id == job.id
        record = client.wait(submitted.job_id, timeout=240)
        assert record["state"] == "completed"
        assert client.describe(submitted.job_id[:10])["id"] == submitted.job_id
        chunks = client.logs(submitted.job_id)
        assert "".join(c.data for c in chunks if c.stream == "stdout") == "hello\n"
        assert "".join(c.data for c in client.follow_logs(submitted.job_id)) == "hello\n"
        outputs = client.get(submitted.job_id, tmp_path / "out")
        assert (outputs.folders["outputs"] / "result.txt").read_text() == "done"
        assert outputs.files["outputs"] == ["result.txt"]

        failing = client.submit(
            shoal.exec_job("python", ["python", "-c", "raise SystemExit(3)"], template_dirs=[])
        )
        with pytest.raises(JobFailedError) as failed:
            client.wait(failing.job_id, timeout=240)
        assert failed.value.exit_code == 3
        assert client.wait(failing.job_id, check=False)["state"] == "failed"


async def test_the_blocking_client_submits_waits_reads_logs_and_gets_outputs(
    system: System, tmp_path: Path
) -> None:
    # in a thread: the services' logs are read on this test's event loop
    await asyncio.to_thread(_sync_scenario, system.env["SHOAL_BROKER_URL"], tmp_path)


def _job(index: int, tag: str) -> Any:
    if index in (7, 239):
        return {"name": f"bad-{index}", "tasks": []}
    if index == 50:
        engine = {"type": "nosuch", "params": {}}
        return {"name": "unknown", "labels": {"sdk": tag}, "tasks": [{"engine": engine}]}
    version = "2.7" if index == 121 else "3.11"
    return shoal.exec_job(
        "python",
        ["python", "-c", f"print({index})"],
        labels={"sdk": tag},
        variables={"version": version},
        template_dirs=[],
    )


async def test_submit_many_refuses_each_bad_job_with_its_error_and_keeps_the_order(
    system: System,
) -> None:
    tag = uuid.uuid4().hex[:8]
    jobs = [_job(index, tag) for index in range(MANY)]
    async with shoal.AsyncClient(system.env["SHOAL_BROKER_URL"]) as client:
        results = await client.submit_many(jobs)
        assert len(results) == MANY
        accepted: list[shoal.Submitted] = []
        for index, (job, result) in enumerate(zip(jobs, results, strict=True)):
            if index in BAD:
                assert type(result) is BAD[index], (index, result)
            else:
                assert isinstance(result, shoal.Submitted), (index, result)
                assert result.original_id == job.id
                accepted.append(result)
        await asyncio.gather(*(client.stop(s.job_id) for s in accepted[RUN:]))

        listed = await client.list(labels={"sdk": tag}, limit=0)
        assert {s.job_id for s in accepted} <= {job["id"] for job in listed["jobs"]}
        first = accepted[0].job_id
        followed = [chunk.data async for chunk in client.follow_logs(first)]
        assert "".join(followed) == "0\n"
        for index, submitted in enumerate(accepted[:RUN]):
            record = await client.wait(submitted.job_id, timeout=240)
            assert record["state"] == "completed"
            logs = await client.logs(submitted.job_id)
            assert "".join(c.data for c in logs) == f"{index}\n"
        again = await client.rerun(first)
        assert (await client.describe(again.job_id))["labels"]["rerun_of"] == first
        await client.stop(again.job_id)


async def test_the_readme_example_of_the_api_runs(system: System, tmp_path: Path) -> None:
    example = ROOT / "examples" / "sdk_batch.py"
    assert example.read_text() in (ROOT / "README.md").read_text()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(example),
        str(tmp_path),
        cwd=ROOT,
        env=system.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(240):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 3
    for line in lines:
        job_id, path = line.split()
        assert _summary(Path(path), tmp_path / job_id) == {
            "east": 47.5,
            "north": 60.0,
            "south": 67.5,
        }


def _summary(path: Path, folder: Path) -> Any:
    assert path.is_relative_to(folder)
    return json.loads(path.read_text())
