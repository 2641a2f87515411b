"""An executor serving only the wasm engine (``--engines wasm``, no Docker needed): wasm jobs
reach it, docker jobs wait in their own queue for an executor that runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from .conftest import System
from .test_wasm import COUNTS_ITS_ARGS

pytestmark = [pytest.mark.rabbitmq]


@pytest.fixture
def system_env() -> dict[str, str]:
    return {"SHOAL_ENGINES": "wasm"}


async def queues(system: System) -> dict[str, dict[str, Any]]:
    done = await system.shoal("status", "--output-format", "json")
    assert done.code == 0, done.err
    return {queue["name"]: queue for queue in json.loads(done.out)["queues"]}


async def test_a_wasm_only_executor_takes_wasm_jobs_and_leaves_docker_jobs(
    system: System, tmp_path: Path
) -> None:
    found = await queues(system)
    assert found["shoal.compute.wasm"]["consumers"] == 1
    assert found["shoal.compute"]["consumers"] == 0, "no executor here serves docker"

    docker = await system.shoal("exec", "python", "--id-only", "--", "python", "-V")
    assert docker.code == 0, docker.err
    module = tmp_path / "count.wasm"
    module.write_bytes(bytes(wasmtime.wat2wasm(COUNTS_ITS_ARGS)))
    done = await system.shoal("exec", "wasm", "--code", str(module), "--id-only", "--wait")
    assert done.code == 0, done.err
    assert (await system.shoal("job", "logs", done.out.strip())).out == "args: 1\n"

    waiting = await system.shoal("job", "describe", docker.out.strip(), "--output-format", "json")
    assert waiting.code == 0, waiting.err
    assert json.loads(waiting.out)["state"] == "queued"
    assert json.loads(waiting.out)["waiting"] == (
        "an executor serving engine 'docker': none is alive (executors alive serve: wasm); "
        "the job runs once one starts (shoal status shows the executors)"
    )
    human = await system.shoal("job", "describe", docker.out.strip())
    assert "Waiting for: an executor serving engine 'docker': none is alive" in human.out
