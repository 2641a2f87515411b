"""The ``ContainerRunner`` port on a real Docker engine, through aiodocker.

Logs are read from the raw multiplexed ``/logs?follow=1`` stream (aiodocker's ``log()`` merges
stdout and stderr): the engine ends that stream when the container exits, then the frames
after the last one seen are read once more (the engine can end the stream before it logged
an unterminated last line). ``get_archive`` is read incrementally so an oversized output is
abandoned at its limit instead of buffered.
Every engine response is closed on every path (aiodocker's ``_query`` leaves that to the
caller): an archive left unread keeps dockerd blocked writing it while it holds the
container's lock, and then even ``docker rm -f`` of that container waits for ever.

An engine that stops or restarts stops its containers first (SIGTERM, then SIGKILL) while it
still answers, so their wait ends as if someone had killed them: ``stopped_by_engine`` tells
the two apart by the engine's own ``kill`` event for the container (from its event log) and
the engine going away (``departures``) since the container started or right after. A wait or
log stream the engine breaks off raises ``RunnerError`` saying the engine went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiodocker
import aiohttp

from shoal.executor.engine import ExitInfo, Stream
from shoal.executor.engines.docker.departures import EngineWatch
from shoal.executor.engines.docker.runner import (
    ENGINE_GONE,
    TAR_OVERHEAD,
    ContainerSpec,
    ImageInfo,
    RunnerError,
    VolumeInfo,
)
from shoal.executor.engines.docker.volumes import folders_usage
from shoal.executor.failures import IMAGE_MISSING, JobError
from shoal.executor.settings import PullPolicy

_STREAMS: dict[int, Stream] = {1: "stdout", 2: "stderr"}
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)
_CHUNK = 256 * 1024
_UNREACHABLE = 900
"""aiodocker's status for an engine it cannot connect to."""
_EVENTS_TIMEOUT = 10.0
"""Seconds the engine gets to answer a question about its event log."""


def _unix_time(stamp: str) -> str:
    """``2026-01-02T03:04:05.123456789Z`` as Docker's ``since``: ``1767323045.123456789``."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return f"{seconds}.{fraction or '0'}"


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """The Docker API ``create`` body for ``spec``: hardened, labelled, no host paths.

    The job runs under Docker's init (``Init``: tini as PID 1), not as PID 1 itself: a signal
    it sends itself or gets from ``kill`` acts as on any process (PID 1 ignores those it has
    no handler for, so a job that killed itself with SIGSEGV used to exit 0), the signal that
    killed it shows as ``128 + N``, and its zombies are reaped.
    """
    mounts: list[dict[str, Any]] = [
        {"Type": "volume", "Source": name, "Target": target}
        for name, target in spec.named_volumes.items()
    ]
    mounts += [
        {"Type": "volume", "Source": name, "Target": target, "ReadOnly": True}
        for name, target in spec.read_only_volumes.items()
    ]
    mounts += [
        {"Type": "bind", "Source": host, "Target": target, "ReadOnly": True}
        for host, target in spec.read_only_files.items()
    ]
    config: dict[str, Any] = {
        "Image": spec.image,
        "Cmd": spec.command,
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Labels": spec.labels,
        "Volumes": {path: {} for path in spec.volumes},
        "User": spec.user,
        "AttachStdin": False,
        "Tty": False,
        "OpenStdin": False,
        "NetworkDisabled": spec.network == "none",
        "HostConfig": {
            "ReadonlyRootfs": True,
            "Tmpfs": spec.tmpfs,
            "Mounts": mounts,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            "PidsLimit": spec.pids_limit,
            "Memory": spec.memory,
            "MemorySwap": spec.memory,
            "NanoCpus": spec.nano_cpus,
            "NetworkMode": spec.network,
            "Ulimits": _ulimits(spec),
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "20m", "max-file": "2"}},
            "Init": True,
        },
    }
    if spec.entrypoint is not None:
        config["Entrypoint"] = spec.entrypoint
    if spec.working_dir:
        config["WorkingDir"] = spec.working_dir
    return config


def _ulimits(spec: ContainerSpec) -> list[dict[str, Any]]:
    if spec.file_size_limit is None:
        return []
    return [{"Name": "fsize", "Soft": spec.file_size_limit, "Hard": spec.file_size_limit}]


class DockerRunner:
    """Containers on a Docker engine."""

    def __init__(self, docker: aiodocker.Docker, *, pull_timeout: float = 300.0) -> None:
        self._docker = docker
        self._pull_timeout = pull_timeout
        self._watch = EngineWatch(docker)
        self._started: dict[str, int] = {}
        """Container → the engine's departures when it was started."""

    @classmethod
    def connect(cls, url: str | None = None, *, pull_timeout: float = 300.0) -> DockerRunner:
        """A runner on the engine at ``url`` (default: ``DOCKER_HOST`` or the local socket)."""
        return cls(aiodocker.Docker(url=url), pull_timeout=pull_timeout)

    @property
    def docker(self) -> aiodocker.Docker:
        """The aiodocker client (for the network set-up)."""
        return self._docker

    async def image(self, image: str, policy: PullPolicy) -> ImageInfo:
        try:
            info = await self._docker.images.inspect(image)
        except aiodocker.DockerError as error:
            if error.status != 404:
                raise RunnerError(f"cannot inspect image {image}: {error.message}") from None
            info = await self._pull(image, policy)
        user = str((info.get("Config") or {}).get("User") or "")
        return ImageInfo(user=user, id=str(info.get("Id") or ""))

    async def _pull(self, image: str, policy: PullPolicy) -> dict[str, Any]:
        if policy is PullPolicy.NEVER:
            raise JobError(
                IMAGE_MISSING, f"{image} is not on this node and the pull policy is 'never'"
            )
        try:
            async with asyncio.timeout(self._pull_timeout):
                await self._docker.images.pull(image)
            return await self._docker.images.inspect(image)
        except TimeoutError:
            raise JobError(
                IMAGE_MISSING, f"{image} is not on this node; pulling it timed out"
            ) from None
        except aiodocker.DockerError as error:
            raise JobError(
                IMAGE_MISSING, f"{image} is not on this node and cannot be pulled: {error.message}"
            ) from None

    async def create(self, spec: ContainerSpec) -> str:
        try:
            container = await self._docker.containers.create(container_config(spec))
        except aiodocker.DockerError as error:
            raise RunnerError(f"cannot create the container: {error.message}") from None
        return str(container.id)

    async def put_archive(self, container: str, path: str, tar: bytes) -> None:
        try:
            response = await self._docker._do_query(
                f"containers/{container}/archive",
                method="PUT",
                params={"path": path},
                data=tar,
                headers={"Content-Type": "application/x-tar"},
            )
        except aiodocker.DockerError as error:
            raise RunnerError(f"cannot place files at {path}: {error.message}") from None
        response.close()

    async def start(self, container: str) -> None:
        self._watch.start()
        self._started[container] = self._watch.departures
        try:
            await self._docker.containers.container(container).start()
        except aiodocker.DockerError as error:
            raise RunnerError(f"cannot start the container: {error.message}") from None

    async def logs(self, container: str) -> AsyncIterator[tuple[Stream, bytes]]:
        last = ""
        async for stream, stamp, data in self._log_frames(container, follow=True):
            last = max(last, stamp)  # stdout and stderr frames can come out of order
            yield stream, data
        # The engine can end a follow stream before it logged the output's last, unterminated
        # line (it writes that one when the container's stdout closes): what came after the
        # last frame seen is read again, without following, once the stream has ended.
        async for stream, stamp, data in self._log_frames(container, since=last):
            if stamp > last:
                yield stream, data

    async def _log_frames(
        self, container: str, *, follow: bool = False, since: str = ""
    ) -> AsyncIterator[tuple[Stream, str, bytes]]:
        """``(stream, timestamp, data)`` of each frame; timestamps are fixed-width RFC 3339
        in UTC, so they compare as strings."""
        params = {"stdout": "1", "stderr": "1", "timestamps": "1"}
        if follow:
            params["follow"] = "1"
        if since:
            params["since"] = _unix_time(since)
        response = await self._docker._do_query(
            f"containers/{container}/logs", method="GET", params=params, timeout=_NO_TIMEOUT
        )
        with contextlib.closing(response):
            content = response.content
            while True:
                try:
                    header = await content.readexactly(8)
                except asyncio.IncompleteReadError:
                    return
                except aiohttp.ClientError as error:
                    raise RunnerError(f"{ENGINE_GONE} ({_name(error)})") from None
                kind, length = struct.unpack(">BxxxL", header)
                if not length:
                    continue
                try:
                    frame = await content.readexactly(length)
                except asyncio.IncompleteReadError as partial:
                    frame = partial.partial
                stamp, _, data = frame.partition(b" ")
                if data:
                    yield _STREAMS.get(kind, "stdout"), stamp.decode(), data

    async def wait(self, container: str) -> ExitInfo:
        handle = self._docker.containers.container(container)
        try:
            result = await handle.wait(timeout=_NO_TIMEOUT)
            state = (await handle.show()).get("State") or {}
        except aiodocker.DockerError as error:
            raise RunnerError(f"cannot wait for the container: {error.message}") from None
        except aiohttp.ClientError as error:  # the engine broke off the wait
            raise RunnerError(f"{ENGINE_GONE} ({_name(error)})") from None
        code = state.get("ExitCode", result.get("StatusCode", -1))
        return ExitInfo(exit_code=int(code), oom_killed=bool(state.get("OOMKilled")))

    async def stopped_by_engine(self, container: str, since: float, within: float) -> bool:
        started = self._started.get(container, self._watch.departures)
        if self._watch.departures != started:
            return True  # gone since the start: its event log went with it
        try:
            async with asyncio.timeout(_EVENTS_TIMEOUT):
                if not await self._killed(container, since):
                    return False
        except TimeoutError:
            pass  # an engine too busy to answer: whether it goes away decides
        except aiodocker.DockerError as error:
            return error.status == _UNREACHABLE  # already gone
        except aiohttp.ClientError:
            return True
        return await self._watch.departed(started, within)

    async def _killed(self, container: str, since: float) -> bool:
        """Whether the engine logged a ``kill`` of ``container`` from ``since`` until now."""
        wanted = {"type": ["container"], "container": [container], "event": ["kill"]}
        params = {
            "since": f"{since:.6f}",
            "until": f"{time.time():.6f}",
            "filters": json.dumps(wanted),
        }
        response = await self._docker._do_query("events", method="GET", params=params)
        with contextlib.closing(response):
            return bool((await response.read()).strip())

    async def kill(self, container: str, signal: str = "SIGKILL") -> None:
        try:
            await self._docker.containers.container(container).kill(signal=signal)
        except aiodocker.DockerError as error:
            if error.status not in (404, 409):  # gone, or not running
                raise RunnerError(f"cannot kill the container: {error.message}") from None

    async def get_archive(self, container: str, path: str, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        try:
            response = await self._docker._do_query(
                f"containers/{container}/archive", method="GET", params={"path": path}
            )
        except aiodocker.DockerError as error:
            raise RunnerError(f"cannot read {path}: {error.message}") from None
        try:
            async for chunk in response.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit + TAR_OVERHEAD:
                    return None
                chunks.append(chunk)
        except aiohttp.ClientError as error:
            raise RunnerError(f"cannot read {path}: {error}") from None
        finally:
            response.close()  # drops the connection if unread: dockerd stops writing at once
        return b"".join(chunks)

    async def volume_usage(self, container: str, limit: int) -> int | None:
        try:
            info = await self._docker.containers.container(container).show()
        except aiodocker.DockerError as error:
            raise RunnerError(f"cannot inspect the container: {error.message}") from None
        anonymous = (info.get("Config") or {}).get("Volumes") or {}
        sources = [
            str(mount.get("Source") or "")
            for mount in info.get("Mounts") or []
            if mount.get("Type") == "volume" and mount.get("Destination") in anonymous
        ]
        return await asyncio.to_thread(folders_usage, sources, limit)

    async def remove(self, container: str) -> None:
        self._started.pop(container, None)
        try:
            await self._docker.containers.container(container).delete(force=True, v=True)
        except aiodocker.DockerError as error:
            if error.status != 404:
                raise RunnerError(f"cannot remove the container: {error.message}") from None

    async def list_labelled(self, labels: dict[str, str]) -> dict[str, dict[str, str]]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        found = await self._docker.containers.list(all=True, filters=filters)
        return {str(c.id): dict(("Labels" in c and c["Labels"]) or {}) for c in found}

    async def create_volume(self, name: str, labels: dict[str, str]) -> None:
        try:
            body = json.dumps({"Name": name, "Labels": labels})
            await self._docker._query_json("volumes/create", method="POST", data=body)
        except aiodocker.DockerError as error:
            raise RunnerError(f"cannot create volume {name}: {error.message}") from None

    async def volume(self, name: str) -> VolumeInfo | None:
        try:
            info = await self._docker._query_json(f"volumes/{name}")
        except aiodocker.DockerError as error:
            if error.status == 404:
                return None
            raise RunnerError(f"cannot inspect volume {name}: {error.message}") from None
        created = datetime.fromisoformat(str(info["CreatedAt"]))
        return VolumeInfo(labels=dict(info.get("Labels") or {}), created=created)

    async def remove_volume(self, name: str) -> None:
        try:
            async with self._docker._query(f"volumes/{name}", method="DELETE"):
                pass
        except aiodocker.DockerError as error:
            if error.status != 404:
                raise RunnerError(f"cannot remove volume {name}: {error.message}") from None

    async def close(self) -> None:
        try:
            await self._watch.close()
        finally:
            await self._docker.close()


def _name(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
