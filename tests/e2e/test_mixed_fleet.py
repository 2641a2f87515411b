"""A mixed fleet: one executor serving only Docker, one only wasm (a node of its own); each
job lands on the executor that can run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime

from .conftest import System
from .test_status import start_executor
from .test_wasm import COUNTS_ITS_ARGS

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

JOBS = 3
"""Jobs of each engine."""


@pytest.fixture
def system_env() -> dict[str, str]:
    return {"SHOAL_ENGINES": "docker"}


async def test_each_job_lands_on_an_executor_of_its_engine(system: System, tmp_path: Path) -> None:
    second, wasm_node = await start_executor(system, SHOAL_ENGINES="wasm")
    try:
        module = tmp_path / "count.wasm"
        module.write_bytes(bytes(wasmtime.wat2wasm(COUNTS_ITS_ARGS)))
        submitted: dict[str, str] = {}
        for n in range(JOBS):
            docker = await system.shoal("exec", "python", "--id-only", "--", "python", "-V")
            assert docker.code == 0, docker.err
            submitted[docker.out.strip()] = system.env["SHOAL_NODE_ID"]
            wasm = await system.shoal(
                "exec", "wasm", "--code", str(module), "--id-only", "--", *"x" * n
            )
            assert wasm.code == 0, wasm.err
            submitted[wasm.out.strip()] = wasm_node
        for job_id, node in submitted.items():
            waited = await system.shoal("job", "wait", job_id)
            assert waited.code == 0, (job_id, waited.out, waited.err)
            described = await system.shoal("job", "describe", job_id, "--output-format", "json")
            record = json.loads(described.out)
            assert record["state"] == "completed"
            (run,) = record["executions"]
            assert run["executor"].startswith(f"{node}-"), (job_id, run)
    finally:
        if second.returncode is None:
            second.terminate()
            await second.wait()
