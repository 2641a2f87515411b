"""Prebuilt python environments: built by a trusted install step, mounted read-only in jobs.

For a python-image job whose dependencies can be shared (``depplan.env_plan``), the executor
computes the environment's key itself (``depplan.env_key``) and looks for the named volume
``shoal-env-<key>``:

- complete (it holds ``.shoal-complete``, which only this module writes, after an install step
  exited 0): the job gets it read-only at ``/shoal-env``;
- absent: a separate install container is run from the same image, as the image's (non-root)
  user, with the job's network, its ``PIP_*`` variables and nothing else of the job: its only
  input is ``/code/plan.json``, the plan read here. It installs into the fresh volume, mounted
  writable in it alone; on exit 0 the marker is written, on any failure the volume is removed,
  and the job fails with ``dependencies failed:``, the step that failed and pip's last error
  line (its ``requirements.log`` is then the job's only output). Its
  ``/outputs/requirements.log`` is placed in the job's ``/outputs`` before the job starts;
- incomplete (being built by another executor on the same engine, or left by one that died):
  the job installs for itself under ``/tmp`` (the launcher's fallback); an incomplete volume
  older than twice ``dep_install_timeout`` is removed and built again.

Within one executor a lock per key makes concurrent jobs with the same requirements share one
install. Jobs never mount a volume writable that another job will see: a job can only harm its
own ``/tmp`` and ``/outputs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from shoal.executor import failures
from shoal.executor.engine import Gate
from shoal.executor.engines.docker.depplan import code_files, env_key, env_plan, pip_env
from shoal.executor.engines.docker.runner import (
    LABEL_EXECUTOR,
    LABEL_JOB,
    LABEL_NODE,
    ContainerRunner,
    ContainerSpec,
    ImageInfo,
    RunnerError,
)
from shoal.executor.engines.docker.spec import CA_MOUNT, ca_env, runs_as_root
from shoal.executor.failures import JobError
from shoal.executor.limits import Limits
from shoal.executor.settings import ExecutorSettings
from shoal.executor.shielded import uncancellable
from shoal.images import ENV_MOUNT, LAUNCHER_PATH
from shoal.metrics import DEPCACHE

log = structlog.get_logger("executor")

VOLUME_PREFIX = "shoal-env-"
LABEL_ENV_KEY = "shoal.env_key"
LABEL_ROLE = "shoal.role"
COMPLETE_MARKER = ".shoal-complete"
PLAN_FILE = "plan.json"
INSTALL_LOG = "/outputs/requirements.log"
LOG_LIMIT = 4 * 1024**2


@dataclass(frozen=True)
class InstallRequest:
    """What the install step may know of a job: its code (for the plan), image, network."""

    job_id: str
    image: str
    info: ImageInfo
    code_tars: list[bytes]
    argv: list[str]
    """The launcher's arguments (``--`` and the job's command): the entry module's name."""
    env: dict[str, str]
    network: str
    network_env: dict[str, str]
    limits: Limits
    gate: Gate
    """The job's stop, and its execution claim: the install step starts once it is cleared."""


@dataclass(frozen=True)
class Prebuilt:
    """The environment a job gets: the volume, and the install log (a tar) when just built."""

    volume: str
    log: bytes | None = None


def tar_of(files: dict[str, bytes], uid: int = 0) -> bytes:
    """A tar of regular files (mode 0644, owned by ``uid``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, uid, uid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def install_failure(log_tar: bytes | None, code: int) -> str:
    """Why the install step failed, for the job's error: the step that failed (``pip install
    x exited 1``, from the launcher's ``$ step`` and ``[exit N]`` lines) and pip's last
    ``ERROR`` line (else the log's last line)."""
    text = ""
    with (
        contextlib.suppress(tarfile.TarError, StopIteration),
        tarfile.open(fileobj=io.BytesIO(log_tar or b"")) as archive,
    ):
        member = next(m for m in archive.getmembers() if m.isfile())
        handle = archive.extractfile(member)
        text = handle.read().decode(errors="replace") if handle else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    steps = [line[2:] for line in lines if line.startswith("$ ")]
    exits = [line[6:-1] for line in lines if line.startswith("[exit ") and line.endswith("]")]
    step = (
        f"{steps[-1]} exited {exits[-1]}" if steps and exits else f"the install step exited {code}"
    )
    errors = [line for line in lines if line.startswith("ERROR")]
    chosen = (errors or [line for line in lines if not line.startswith(("[exit", "$ "))])[-1:]
    return f"{step}: {chosen[0][:500]}" if chosen else step


class DepCache:
    """The node's prebuilt environments (named volumes on the engine)."""

    def __init__(
        self, runner: ContainerRunner, settings: ExecutorSettings, executor_id: str
    ) -> None:
        self._runner = runner
        self._settings = settings
        self._executor_id = executor_id
        self._locks: dict[str, asyncio.Lock] = {}
        self._ready: set[str] = set()

    async def environment(self, request: InstallRequest) -> Prebuilt | None:
        """The job's prebuilt environment; None when it installs for itself (or needs none).

        Raises ``JobError(DEPS_FAILED)`` when the install step fails.
        """
        if runs_as_root(request.info.user):
            return None  # the install step never runs as root
        plan = env_plan(code_files(request.code_tars), request.argv)
        if plan is None:
            return None
        key = env_key(plan, request.info.id, pip_env(request.env))
        volume = VOLUME_PREFIX + key[:48]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if volume in self._ready:
                DEPCACHE.labels("hit").inc()
                return Prebuilt(volume)
            state = await self._state(volume, request)
            if state == "building":
                DEPCACHE.labels("busy").inc()
                log.info("depcache.busy", volume=volume, job_id=request.job_id)
                return None
            if state == "complete":
                DEPCACHE.labels("hit").inc()
                self._ready.add(volume)
                return Prebuilt(volume)
            DEPCACHE.labels("built").inc()
            built = await self._build(volume, key, plan, request)
            if built is not None:
                self._ready.add(volume)
            return built

    async def _state(self, volume: str, request: InstallRequest) -> str:
        """``absent``, ``complete`` or ``building`` (a stale incomplete one is removed)."""
        info = await self._runner.volume(volume)
        if info is None:
            return "absent"
        if await self._has_marker(volume, request):
            return "complete"
        age = (datetime.now(UTC) - info.created).total_seconds()
        if age < 2 * self._settings.dep_install_timeout:
            return "building"
        log.warning("depcache.stale", volume=volume, age=round(age))
        await self._runner.remove_volume(volume)
        return "absent"

    async def _has_marker(self, volume: str, request: InstallRequest) -> bool:
        spec = ContainerSpec(
            image=request.image,
            entrypoint=["true"],
            labels={**self._labels(request.job_id), LABEL_ROLE: "probe"},
            read_only_volumes={volume: ENV_MOUNT},
            memory=64 * 1024**2,
            pids_limit=16,
        )
        container = await self._runner.create(spec)
        try:
            marker = await self._runner.get_archive(
                container, f"{ENV_MOUNT}/{COMPLETE_MARKER}", 64 * 1024
            )
            return marker is not None
        except RunnerError:
            return False
        finally:
            await uncancellable(self._runner.remove(container))

    def _labels(self, job_id: str) -> dict[str, str]:
        return {
            LABEL_JOB: job_id,
            LABEL_NODE: self._settings.node_id,
            LABEL_EXECUTOR: self._executor_id,
        }

    def _install_spec(self, volume: str, request: InstallRequest) -> ContainerSpec:
        settings = self._settings
        env = {
            **pip_env(request.env),
            **request.network_env,
            **ca_env(settings),
            "HOME": "/tmp",
        }
        return ContainerSpec(
            image=request.image,
            entrypoint=[LAUNCHER_PATH],
            command=["--install"],
            env=env,
            user=request.info.user,
            labels={**self._labels(request.job_id), LABEL_ROLE: "install"},
            volumes=("/code", "/outputs"),
            tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={settings.tmp_size}"},
            named_volumes={volume: ENV_MOUNT},
            read_only_files={str(settings.ca_bundle): CA_MOUNT} if settings.ca_bundle else {},
            memory=request.limits.memory,
            nano_cpus=int(request.limits.cpu * 1_000_000_000),
            pids_limit=settings.pids_limit,
            network=request.network,
        )

    async def _build(
        self, volume: str, key: str, plan: dict[str, Any], request: InstallRequest
    ) -> Prebuilt | None:
        """Install ``plan`` into the new ``volume``; None when the job was stopped meanwhile."""
        labels = {LABEL_ENV_KEY: key, LABEL_EXECUTOR: self._executor_id}
        await self._runner.create_volume(volume, labels)
        kept = False
        try:
            container = await self._runner.create(self._install_spec(volume, request))
            try:
                plan_tar = tar_of({PLAN_FILE: json.dumps(plan, sort_keys=True).encode()})
                await self._runner.put_archive(container, "/code", plan_tar)
                code = await self._run(container, request)
                if code is None:
                    return None
                install_log = await self._read_log(container)
                if code != 0:
                    raise JobError(
                        failures.DEPS_FAILED, install_failure(install_log, code), log=install_log
                    )
                marker = tar_of({COMPLETE_MARKER: f"{key}\n".encode()})
                await self._runner.put_archive(container, ENV_MOUNT, marker)
                kept = True
                log.info("depcache.built", volume=volume, job_id=request.job_id)
                return Prebuilt(volume, install_log)
            finally:
                await uncancellable(self._runner.remove(container))
        finally:
            if not kept:
                await uncancellable(self._forget(volume))

    async def _run(self, container: str, request: InstallRequest) -> int | None:
        """Start the install step and wait: its exit code, None when the job was stopped."""
        timeout = min(self._settings.dep_install_timeout, request.limits.execution_timeout)
        await request.gate.wait_clear()
        await self._runner.start(container)
        waiter = asyncio.ensure_future(self._runner.wait(container))
        stop = asyncio.ensure_future(request.gate.stopped.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter in done:
                return waiter.result().exit_code
            await self._runner.kill(container)
            if stop in done:
                return None
            raise JobError(
                failures.DEPS_FAILED, f"installing the job's requirements took over {timeout:g}s"
            )
        finally:
            for task in (waiter, stop):
                task.cancel()
            await asyncio.gather(waiter, stop, return_exceptions=True)

    async def _read_log(self, container: str) -> bytes | None:
        try:
            return await self._runner.get_archive(container, INSTALL_LOG, LOG_LIMIT)
        except RunnerError:
            return None

    async def _forget(self, volume: str) -> None:
        try:
            await self._runner.remove_volume(volume)
        except RunnerError as error:
            log.error("depcache.remove_failed", volume=volume, error=str(error))
