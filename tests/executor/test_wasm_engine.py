"""The wasm engine through the executor's lifecycle: its confinement and limits, each ending
with a clear reason, and its module cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal.executor.engines.wasm.engine import WasmEngine
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl, Node, Outcome, execute
from shoal.executor.settings import ExecutorSettings
from shoal.model import Job, JobState
from shoal.wire import utcnow

from .support import inline_input, untar
from .wasm_modules import ACCEPTS, ESCAPES, GREEDY, GREETS, OPENS_SOCKET, SPINS, wasm_job

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    settings = ExecutorSettings(node_id="unit", log_flush_seconds=0.05)
    engine = WasmEngine(settings, executor_id="exec-unit", runs_root=tmp_path / "runs")
    return Node(settings, {engine.name: engine}, MemoryEventSink(), "exec-unit")


def engine_of(node: Node) -> WasmEngine:
    engine = node.engines["wasm"]
    assert isinstance(engine, WasmEngine)
    return engine


def sink(node: Node) -> MemoryEventSink:
    assert isinstance(node.sink, MemoryEventSink)
    return node.sink


async def run(node: Node, job: Job, control: JobControl | None = None) -> Outcome:
    return await execute(job, utcnow(), node, control or JobControl())


def run_folders(node: Node) -> set[Path]:
    return set(engine_of(node).runs_root.glob("*/*/*"))


async def test_a_job_runs_streams_its_output_and_keeps_its_results(node: Node) -> None:
    before = run_folders(node)
    job = wasm_job(GREETS, outputs=[{"name": "out", "path": "/outputs"}])
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.exit_code == 3
    assert outcome.error == "exit code: oops"
    events = sink(node).of(job.id)
    logs = "".join(e.data for e in events if e.kind == "log" and e.stream == "stdout")
    assert logs == "hello\n"
    (result,) = [e for e in events if e.kind == "result"]
    assert result.outputs is not None
    assert untar(result.outputs["out"]) == {"out.txt": b"done\n"}
    assert run_folders(node) == before, "the run's host folders are removed"


async def test_reading_outside_its_folders_is_refused(node: Node) -> None:
    outcome = await run(node, wasm_job(ESCAPES))
    assert outcome.state is JobState.FAILED
    assert outcome.error == "exit code: cannot open ../etc/passwd"


async def test_growing_past_the_memory_limit_fails_as_out_of_memory(node: Node) -> None:
    outcome = await run(node, wasm_job(GREEDY, resources={"memory": 8 * 1024**2}))
    assert outcome.state is JobState.FAILED
    assert outcome.error == "oom-killed: the job used more than its memory limit of 8.0 MiB"


async def test_running_past_its_timeout_is_interrupted_at_once(node: Node) -> None:
    outcome = await asyncio.wait_for(
        run(node, wasm_job(SPINS, timeouts={"execution": 0.5, "grace": 30})), 10
    )
    assert outcome.state is JobState.FAILED
    assert (
        outcome.error
        == "timeout: execution exceeded 0.5s (interrupted at once: WASI has no signals)"
    )


async def test_a_stopped_module_is_interrupted_at_once(node: Node) -> None:
    job = wasm_job(SPINS, timeouts={"grace": 30})
    control = JobControl()
    task = asyncio.create_task(run(node, job, control))
    await sink(node).wait_for(lambda e: e.job_id == job.id and e.state is JobState.RUNNING)
    control.stop("stopped by user")
    outcome = await asyncio.wait_for(task, 10)  # well within the grace: no signal to wait on
    assert outcome.state is JobState.STOPPED
    assert outcome.error == "stopped: stopped by user (interrupted at once: WASI has no signals)"


async def test_a_socket_call_is_refused(node: Node) -> None:
    """WASI's own socket calls meet no socket: the module gets ENOTSOCK (57) and exits with it."""
    outcome = await run(node, wasm_job(ACCEPTS))
    assert outcome.state is JobState.FAILED
    assert outcome.exit_code == 57


async def test_a_module_importing_a_socket_opener_is_refused(node: Node) -> None:
    outcome = await run(node, wasm_job(OPENS_SOCKET))
    assert outcome.state is JobState.FAILED
    assert outcome.exit_code is None, "it never started"
    assert outcome.error == (
        "network not allowed: wasm jobs have no network (WASI gives none): "
        "the module imports wasi_snapshot_preview1::sock_open"
    )


async def test_a_stop_ends_a_running_module(node: Node) -> None:
    control = JobControl()
    job = wasm_job(SPINS)
    running = asyncio.ensure_future(run(node, job, control))
    await sink(node).wait_for(lambda e: e.kind == "state" and e.state is JobState.RUNNING, 10)
    control.stop("enough")
    outcome = await running
    assert outcome.state is JobState.STOPPED
    assert outcome.error is not None
    assert outcome.error.startswith("stopped: enough")


async def test_a_network_is_refused(node: Node) -> None:
    job = wasm_job(GREETS, network={"type": "http", "domains": ["example.org"]})
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.error == (
        "network not allowed: wasm jobs have no network (WASI gives none); "
        "run it as a docker job instead"
    )


async def test_results_outside_outputs_are_refused(node: Node) -> None:
    outcome = await run(node, wasm_job(GREETS, outputs=[{"name": "t", "path": "/tmp"}]))
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("output not writable: /tmp is not under /outputs")


async def test_a_module_is_compiled_once(node: Node) -> None:
    engine = node.engines["wasm"]
    assert isinstance(engine, WasmEngine)
    for _ in range(3):
        outcome = await run(node, wasm_job(GREETS))
        assert outcome.exit_code == 3
    assert engine.modules.compiles == 1


async def test_a_file_that_is_no_module_fails_its_input(node: Node) -> None:
    code = inline_input("file", {"module.wasm": b"not a module"}, "/code/module.wasm")
    params = {"module": "/code/module.wasm"}
    job = Job.model_validate(
        {"tasks": [{"engine": {"type": "wasm", "params": params}, "inputs": [code]}]}
    )
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("input failed: /code/module.wasm is not a WebAssembly module")


async def test_a_gone_executors_run_folders_are_removed_at_start(node: Node) -> None:
    engine = engine_of(node)
    gone = engine.node_runs / "node-a-1-abc" / "run-x"
    living = engine.node_runs / "node%2Fb-2-def" / "run-y"
    own = engine.runs / "run-z"
    elsewhere = engine.runs_root / "other" / "other-3-ghi" / "run-w"  # another vhost's node
    for folder in (gone, living, own, elsewhere):
        (folder / "outputs").mkdir(parents=True)
    asked: list[str] = []

    async def alive(executor_id: str) -> bool:
        asked.append(executor_id)
        return executor_id == "node/b-2-def"

    await engine.clean_up(alive)
    assert not gone.parent.exists()
    assert living.is_dir()
    assert own.is_dir()
    assert elsewhere.is_dir()
    assert sorted(asked) == ["node-a-1-abc", "node/b-2-def"], "its own folder is not asked about"
