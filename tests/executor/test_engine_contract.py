"""The ``Engine`` contract: the same tests on every engine the executor serves.

Each engine comes with a way to write the contract's few jobs in its own terms (``Jobs``):
Docker (real), Docker's in-memory twin, and WebAssembly (wasmtime, in-process).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from shoal.executor.engine import Engine, Stream, Workload
from shoal.executor.engines.docker.docker_runner import DockerRunner
from shoal.executor.engines.docker.engine import DockerEngine
from shoal.executor.engines.docker.gateway import NoGateway
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ContainerRunner, ImageInfo
from shoal.executor.engines.wasm.engine import WasmEngine
from shoal.executor.execution import JobControl
from shoal.executor.failures import UNSUPPORTED, JobError
from shoal.executor.limits import limits
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.model import Job

from .support import BASE_IMAGE, docker_job
from .wasm_modules import GREETS, SPINS, wasm_job

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Jobs:
    """The contract's jobs, written for one engine."""

    greets: Callable[[], Job]
    """Writes ``hello`` to stdout, ``oops`` to stderr, ``done`` to /outputs/out.txt, exits 3."""
    sleeps: Callable[[], Job]
    """Runs until it is killed."""
    foreign: Callable[[], Job]
    """A job for another engine."""


def _docker_jobs() -> Jobs:
    outputs = [{"name": "out", "path": "/outputs"}]
    script = "echo hello; echo oops >&2; echo done > /outputs/out.txt; exit 3"
    return Jobs(
        greets=lambda: docker_job(script, outputs=outputs),
        sleeps=lambda: docker_job("sleep 30"),
        foreign=lambda: Job.model_validate(
            {"tasks": [{"engine": {"type": "elsewhere", "params": {}}}]}
        ),
    )


def _wasm_jobs() -> Jobs:
    outputs = [{"name": "out", "path": "/outputs"}]
    return Jobs(
        greets=lambda: wasm_job(GREETS, outputs=outputs),
        sleeps=lambda: wasm_job(SPINS),
        foreign=lambda: docker_job("true"),
    )


@pytest.fixture(params=["twin", "wasm", pytest.param("docker", marks=pytest.mark.docker)])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Engine, Jobs]]:
    """Each engine in turn, with its jobs."""
    settings = ExecutorSettings(
        node_id="contract", pull_policy=PullPolicy.NEVER, allowed_images=[BASE_IMAGE]
    )
    if request.param == "wasm":
        yield WasmEngine(settings), _wasm_jobs()
        return
    runner: ContainerRunner
    if request.param == "twin":
        runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    else:
        runner = DockerRunner.connect()
    docker = DockerEngine(settings, runner, NoGateway("no http network here"), "exec-contract")
    try:
        yield docker, _docker_jobs()
    finally:
        await docker.close()


def _files(archive: str) -> dict[str, bytes]:
    raw = gzip.decompress(base64.b64decode(archive))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        found = {}
        for member in tar.getmembers():
            data = tar.extractfile(member)
            if data is not None:
                found[member.name.removeprefix("./")] = data.read()
        return found


async def _output(workload: Workload) -> dict[Stream, bytes]:
    text: dict[Stream, bytes] = {"stdout": b"", "stderr": b""}
    async for stream, data in workload.logs():
        text[stream] += data
    return text


async def test_exit_code_logs_and_outputs(engine: tuple[Engine, Jobs]) -> None:
    runs, jobs = engine
    job = jobs.greets()
    runs.admit(job)
    async with runs.workload(job, limits(job.task, ExecutorSettings()), JobControl()) as work:
        await work.start()
        text = await _output(work)
        exit_info = await asyncio.wait_for(work.wait(), 30)
        outputs = await work.collect()
    assert exit_info.exit_code == 3
    assert not exit_info.oom_killed
    assert text["stdout"] == b"hello\n"
    assert text["stderr"] == b"oops\n"
    assert not outputs.truncated
    assert _files(outputs.archives["out"]) == {"out.txt": b"done\n"}


async def test_sigkill_ends_a_running_workload(engine: tuple[Engine, Jobs]) -> None:
    runs, jobs = engine
    job = jobs.sleeps()
    async with runs.workload(job, limits(job.task, ExecutorSettings()), JobControl()) as work:
        await work.start()
        await work.kill("SIGKILL")
        exit_info = await asyncio.wait_for(work.wait(), 30)
        await work.kill("SIGKILL")  # no error once it exited
    assert exit_info.exit_code != 0


async def test_clean_up_leaves_the_runs_of_live_executors(engine: tuple[Engine, Jobs]) -> None:
    runs, jobs = engine
    job = jobs.sleeps()

    async def alive(executor_id: str) -> bool:
        return True

    async with runs.workload(job, limits(job.task, ExecutorSettings()), JobControl()) as work:
        await work.start()
        await runs.clean_up(alive)
        await work.kill("SIGKILL")
        exit_info = await asyncio.wait_for(work.wait(), 30)
    assert exit_info.exit_code != 0


async def test_a_job_for_another_engine_is_refused(engine: tuple[Engine, Jobs]) -> None:
    runs, jobs = engine
    with pytest.raises(JobError) as refused:
        runs.admit(jobs.foreign())
    assert refused.value.error.startswith(UNSUPPORTED)
