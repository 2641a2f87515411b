"""The WebAssembly engine: a WASI module per job, run in-process by wasmtime in a thread.

What the module sees: ``/code`` and ``/inputs`` read-only, ``/outputs`` and ``/tmp``
writable, each a host folder the executor makes for the run and removes after it; nothing
else of the host's file system, and no network (WASI gives none: a job asking for one is
refused, and a module importing a socket opener is refused, ``sockets``). Its argv is
the module's name then ``params.parameters``; its environment ``params.env`` and the task's
``env``.

Limits: the job's memory limit caps the module's linear memory (wasmtime store limits; a
module that ends abnormally with less than an eighth of it left is reported as out of
memory); ``kill`` (any signal: WASI has no signals, so a stop or a timeout ends the module
at once, and its exit says it was interrupted) advances the run's epoch, which traps the
module at its next loop or call (not while it waits in a host call such as a sleep);
``/outputs`` and ``/tmp`` together may hold ``volume_limit`` bytes. Output is written to
host files and streamed from them while the module runs (each stream in order; the
interleaving of the two is as seen at each poll).
Compiled modules are cached per executor (``modules.ModuleCache``). Run folders live in a
folder per executor inside one per node ID (``runs_root``), so the next executor started
with that node ID removes those of one that was killed (``clean_up``); executors of another
node ID (another broker or vhost, on the same host) are never taken for gone, as with
containers.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote

import structlog
import wasmtime
from pydantic import ValidationError

from shoal.executor import failures
from shoal.executor.addresses import DestinationPolicy, NodeAddresses
from shoal.executor.engine import ExitInfo, Gate, Outputs, Overrun, Stream
from shoal.executor.engines.docker.depplan import code_files
from shoal.executor.engines.docker.inputs import Placement, prepare_inputs, top_level
from shoal.executor.engines.docker.volumes import folders_usage
from shoal.executor.engines.wasm import python
from shoal.executor.engines.wasm.folders import collect, extract, host_path
from shoal.executor.engines.wasm.modules import ModuleCache, engine_config
from shoal.executor.engines.wasm.packages import PackageCache
from shoal.executor.engines.wasm.python import PythonRuntime, find_python
from shoal.executor.engines.wasm.sockets import refuse_imports
from shoal.executor.failures import JobError
from shoal.executor.limits import Limits
from shoal.executor.settings import ExecutorSettings
from shoal.executor.shielded import uncancellable
from shoal.liveness import Alive
from shoal.model import Job, NetworkType, WasmParams, describe_errors

log = structlog.get_logger("executor")

READ_ONLY = ("/code", "/inputs")
WRITABLE = ("/outputs", "/tmp")
LOG_POLL = 0.05
"""Seconds between reads of a running module's output files."""
KILLED_EXIT = 128 + 9
"""The exit code of a module the executor ended (as for a process killed by SIGKILL)."""
TRAP_EXIT = 1
"""The exit code of a module that trapped (the trap is its last stderr line)."""
OOM_SHARE = 8
"""A module that ended abnormally with less than 1/OOM_SHARE of its memory limit left ran
out of memory."""


def wasm_params(job: Job) -> WasmParams:
    """The job's wasm engine params; ``JobError(UNSUPPORTED)`` for any other engine."""
    if job.task.engine.type != "wasm":
        raise JobError(
            failures.UNSUPPORTED,
            f"engine {job.task.engine.type!r} is not wasm; the wasm engine runs wasm jobs only",
        )
    try:
        return WasmParams.model_validate(job.task.engine.params)
    except ValidationError as error:
        raise JobError(failures.UNSUPPORTED, f"engine.params.{describe_errors(error)}") from None


def _open_all(paths: dict[Stream, str]) -> dict[Stream, BinaryIO]:
    return {name: open(path, "rb") for name, path in paths.items()}


def _lay_out(run_dir: str, placements: list[Placement]) -> tuple[dict[str, str], dict[Stream, str]]:
    """Make the run's folders in ``run_dir``, extract the inputs, make the empty output
    files; the folders (job path → host path) and the output files."""
    folders = {path: os.path.join(run_dir, path.strip("/")) for path in READ_ONLY + WRITABLE}
    for folder in folders.values():
        os.mkdir(folder, 0o700)
    for placement in placements:
        extract(placement.tar, folders[placement.root])
    logs_at: dict[Stream, str] = {
        "stdout": os.path.join(run_dir, "stdout"),
        "stderr": os.path.join(run_dir, "stderr"),
    }
    for path in logs_at.values():
        open(path, "wb").close()
    return folders, logs_at


def _read_module(folders: dict[str, str], module: str) -> bytes:
    """The bytes of the job's ``module`` (a file under ``/code``)."""
    found = host_path(folders, module)
    if found is None or os.path.islink(found) or not os.path.isfile(found):
        raise JobError(failures.INPUT_FAILED, f"the module {module} is not a file in /code")
    with open(found, "rb") as source:
        return source.read()


@dataclass
class WasmWorkload:
    """One module's run: its own wasmtime engine (so its epoch is its own) and folders."""

    module: wasmtime.Module
    engine: wasmtime.Engine
    wasi: wasmtime.WasiConfig
    memory: int
    logs_at: dict[Stream, str]
    folders: dict[str, str]
    settings: ExecutorSettings
    job: Job
    reactor: bool = False
    """The module is a reactor (the python runtime's): it runs by ``_initialize`` then
    ``run``, whose result is its exit code, and imports WASI does not provide (its optional
    ``host.call``) trap when called instead of refusing it."""
    killed: bool = False
    task: asyncio.Task[ExitInfo] | None = None
    _ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.task = asyncio.create_task(asyncio.to_thread(self._run))
        self.task.add_done_callback(lambda _: self._ended.set())

    def _run(self) -> ExitInfo:
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=self.memory)
        store.set_epoch_deadline(1)
        if self.killed:  # killed before the deadline was set: its epoch went by unseen
            return ExitInfo(KILLED_EXIT)
        store.set_wasi(self.wasi)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        if self.reactor:
            linker.define_unknown_imports_as_traps(self.module)
        instance: wasmtime.Instance | None = None
        try:
            instance = linker.instantiate(store, self.module)
            return ExitInfo(self._enter(store, instance))
        except wasmtime.ExitTrap as ended:
            return ExitInfo(ended.code)
        except (wasmtime.Trap, wasmtime.WasmtimeError, KeyError, AssertionError) as error:
            if self.killed:
                return ExitInfo(KILLED_EXIT)
            what = "trapped" if instance is not None else "could not start"
            line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            self._stderr(f"wasm: the module {what}: {line}\n")
            return ExitInfo(TRAP_EXIT, oom_killed=self._out_of_memory(store, instance, error))

    def _enter(self, store: wasmtime.Store, instance: wasmtime.Instance) -> int:
        """Run the module; its exit code when it returns (a command's ``_start``: 0)."""
        exports = instance.exports(store)
        if not self.reactor:
            start = exports["_start"]
            assert isinstance(start, wasmtime.Func)
            start(store)
            return 0
        initialize = exports.get("_initialize")
        if isinstance(initialize, wasmtime.Func):
            initialize(store)
        run = exports["run"]
        assert isinstance(run, wasmtime.Func)
        code = run(store)
        assert isinstance(code, int)
        return code

    def _out_of_memory(
        self, store: wasmtime.Store, instance: wasmtime.Instance | None, error: Exception
    ) -> bool:
        if instance is None:
            return "memory" in str(error) and "limit" in str(error)
        memory = instance.exports(store).get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return False
        return self.memory - memory.data_len(store) < self.memory // OOM_SHARE

    def _stderr(self, text: str) -> None:
        with open(self.logs_at["stderr"], "a", encoding="utf-8") as stderr:
            stderr.write(text)

    async def logs(self) -> AsyncIterator[tuple[Stream, bytes]]:
        files = await asyncio.to_thread(_open_all, self.logs_at)
        try:
            while True:
                ended = self._ended.is_set()
                for name, file in files.items():
                    data = file.read()
                    if data:
                        yield name, data
                if ended:
                    return
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), LOG_POLL)
        finally:
            for file in files.values():
                file.close()

    async def wait(self) -> ExitInfo:
        assert self.task is not None, "started"
        ended = await asyncio.shield(self.task)
        return replace(ended, interrupted=True) if self.killed else ended

    async def kill(self, signal: str) -> None:
        self.killed = True
        self.engine.increment_epoch()

    async def overrun(self) -> Overrun:
        limit = self.settings.volume_limit
        writable = [self.folders[path] for path in WRITABLE]
        while True:
            used = await asyncio.to_thread(folders_usage, writable, limit)
            if used is not None and used > limit:
                return Overrun(limit)
            await asyncio.sleep(self.settings.volume_check_seconds)

    async def stopped_by_engine(self) -> str | None:
        return None  # wasmtime runs in the executor: it goes away with it

    async def collect(self) -> Outputs:
        return await asyncio.to_thread(
            collect, self.folders, self.job.task.outputs, self.settings.job_output_limit
        )


@dataclass
class WasmEngine:
    """Jobs of engine type ``wasm``: WASI modules, no Docker needed."""

    settings: ExecutorSettings
    addresses: NodeAddresses = field(default_factory=NodeAddresses)
    name: str = "wasm"
    modules: ModuleCache = field(default_factory=ModuleCache)
    python: PythonRuntime | None = field(default_factory=find_python)
    executor_id: str = field(default_factory=lambda: f"local-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    runs_root: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / f"shoal-wasm-runs-{os.getuid()}"
    )
    """Where executors keep their runs' folders: one folder per node ID, in it one per
    executor."""
    packages: PackageCache = field(init=False)

    def __post_init__(self) -> None:
        self.packages = PackageCache(self.settings)

    @property
    def node_runs(self) -> Path:
        """The folders of the executors of this node ID (``settings.node_id``)."""
        return self.runs_root / quote(self.settings.node_id, safe="")

    @property
    def runs(self) -> Path:
        """This executor's folder of run folders."""
        return self.node_runs / quote(self.executor_id, safe="")

    def admit(self, job: Job) -> None:
        if wasm_params(job).runtime == "python":
            python.require(self.python)
        task = job.task
        if task.network is not None and task.network.type is not NetworkType.NONE:
            raise JobError(
                failures.NETWORK_NOT_ALLOWED,
                "wasm jobs have no network (WASI gives none); run it as a docker job instead",
            )
        for item in task.inputs:
            if top_level(item.target) not in READ_ONLY:
                raise JobError(
                    failures.UNSUPPORTED,
                    f"input target {item.target} is outside /code and /inputs, the only "
                    "folders a wasm job reads",
                )
        for result in task.outputs:
            path = posixpath.normpath(result.path)
            if path != "/outputs" and not path.startswith("/outputs/"):
                raise JobError(
                    failures.OUTPUT_NOT_WRITABLE,
                    f"{result.path} is not under /outputs, the only folder a wasm job's "
                    f"results are collected from; use -o {result.name}:/outputs",
                )

    def describe(self, job: Job) -> str:
        params = job.task.engine.params
        return str(params.get("module") or params.get("runtime") or "")

    def destinations(self) -> DestinationPolicy:
        """Where url inputs may come from."""
        return DestinationPolicy(
            self.addresses,
            allow_private=self.settings.allow_private_addresses,
            allowed_ports=self.settings.allowed_ports,
        )

    @asynccontextmanager
    async def workload(self, job: Job, limits: Limits, gate: Gate) -> AsyncIterator[WasmWorkload]:
        params = wasm_params(job)
        self.runs.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_dir = tempfile.mkdtemp(prefix="run-", dir=self.runs)
        try:
            placements = await prepare_inputs(
                job.task.inputs, self.settings, 0, self.destinations()
            )
            folders, logs_at = await asyncio.to_thread(_lay_out, run_dir, placements)
            engine = wasmtime.Engine(engine_config())
            wasi = wasmtime.WasiConfig()
            if params.runtime == "python":
                runtime = python.require(self.python)
                code = code_files(p.tar for p in placements if p.root == "/code")
                packages = await self.packages.site_packages(runtime, code, params.parameters)
                module = await asyncio.to_thread(self.modules.load_file, engine, runtime.module)
                wasi.argv = runtime.argv(params.parameters, packages)
                environment = {**python.ENV, **params.env, **job.task.env}
                await asyncio.to_thread(runtime.preopen, wasi, folders["/code"], packages)
            else:
                module = await self._compiled(engine, folders, params.module)
                wasi.argv = [posixpath.basename(params.module), *params.parameters]
                environment = {**params.env, **job.task.env}
            wasi.env = list(environment.items())
            wasi.stdout_file = logs_at["stdout"]
            wasi.stderr_file = logs_at["stderr"]
            for path, folder in folders.items():
                wasi.preopen_dir(folder, path, fs_mutable=path in WRITABLE)
            workload = WasmWorkload(
                module,
                engine,
                wasi,
                limits.memory,
                logs_at,
                folders,
                self.settings,
                job,
                reactor=params.runtime is not None,
            )
            try:
                yield workload
            finally:
                if workload.task is not None and not workload.task.done():
                    await workload.kill("SIGKILL")
                    await uncancellable(asyncio.gather(workload.task, return_exceptions=True))
        finally:
            await uncancellable(asyncio.to_thread(shutil.rmtree, run_dir, True))

    async def clean_up(self, alive: Alive) -> None:
        """Remove the run folders of this node's executors that are gone (a wasm run lives
        in its executor's process, so a killed executor leaves only its folders); ``alive``
        answers for this node's broker and vhost only, so other node IDs are left alone."""
        try:
            owners = [entry.name for entry in self.node_runs.iterdir() if entry.is_dir()]
        except FileNotFoundError:
            return
        for name in owners:
            if name == self.runs.name or await alive(unquote(name)):
                continue
            await asyncio.to_thread(shutil.rmtree, self.node_runs / name, True)
            log.info("orphans.reaped", engine=self.name, executor=unquote(name))

    async def _compiled(
        self, engine: wasmtime.Engine, folders: dict[str, str], name: str
    ) -> wasmtime.Module:
        """The job's own module, compiled (or found in the cache) for ``engine``."""
        wasm = await asyncio.to_thread(_read_module, folders, name)
        try:
            module = await asyncio.to_thread(self.modules.load, engine, wasm)
        except wasmtime.WasmtimeError as error:
            first = str(error).strip().splitlines()[0]
            raise JobError(
                failures.INPUT_FAILED, f"{name} is not a WebAssembly module: {first}"
            ) from None
        refuse_imports(module)
        return module

    async def close(self) -> None:
        """Remove this executor's (by now empty) folder of run folders."""
        with suppress(OSError):
            self.runs.rmdir()
