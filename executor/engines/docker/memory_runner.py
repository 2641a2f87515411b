"""An in-memory ``ContainerRunner``: the fast tests' twin of ``DockerRunner``.

A container's command must be ``sh -c SCRIPT`` where SCRIPT is a few ``;``-separated
statements from a tiny shell subset, enough for the contract tests to run unchanged on both:

    echo WORDS [>&2 | > FILE]   cat FILE   cp SRC DST   sleep SECONDS   exit CODE   true   false
    set ...  (ignored: the twin always stops at the first failing statement, like set -e)
    trap 'STATEMENTS' TERM   (on SIGTERM run STATEMENTS, then exit 0; ``''`` ignores SIGTERM)

``kill`` acts as on a container under an init: SIGKILL ends it with 137, SIGTERM runs its
trap or ends it with 143.
``stop_engine`` stops every running container as an engine going away does (143), and
``stopped_by_engine`` then says so for them.

Files live in a dict; the root is read-only and only volumes and tmpfs mounts are writable,
as with the real runner's containers.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import posixpath
import shlex
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shoal.executor.engine import ExitInfo, Stream
from shoal.executor.engines.docker.runner import (
    TAR_OVERHEAD,
    ContainerSpec,
    ImageInfo,
    RunnerError,
    VolumeInfo,
)
from shoal.executor.failures import IMAGE_MISSING, JobError
from shoal.executor.settings import PullPolicy


@dataclass
class FakeContainer:
    """One container's state in the twin."""

    spec: ContainerSpec
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)
    """Folders placed by ``put_archive`` → their owner's uid."""
    output: list[tuple[Stream, bytes]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None
    task: asyncio.Task[None] | None = None
    started: bool = False
    trap: str | None = None
    """The ``trap`` statements run on SIGTERM (``None``: no trap)."""

    def writable(self, path: str) -> bool:
        mounts = [*self.spec.volumes, *self.spec.tmpfs, *self.spec.named_volumes.values()]
        return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)

    def emit(self, stream: Stream, data: bytes) -> None:
        self.output.append((stream, data))
        self.changed.set()

    def finish(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
        self.exited.set()
        self.changed.set()


class _ExitError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class MemoryRunner:
    """Containers as dicts and tasks; images are names given to the constructor."""

    def __init__(
        self, images: dict[str, ImageInfo] | None = None, pullable: frozenset[str] = frozenset()
    ) -> None:
        self.images = dict(images or {})
        self.pullable = pullable
        self.containers: dict[str, FakeContainer] = {}
        self.removed: list[str] = []
        self.created: dict[str, FakeContainer] = {}
        """Every container ever created, removed or not (for the tests to inspect)."""
        self.volumes: dict[str, VolumeInfo] = {}
        self.signals: list[tuple[str, str]] = []
        """``(container, signal)`` of every ``kill``, in order (for the tests to inspect)."""
        self.engine_stopped: set[str] = set()
        """The containers ``stop_engine`` ended."""
        self._ids = itertools.count(1)

    def _get(self, container: str) -> FakeContainer:
        try:
            return self.containers[container]
        except KeyError:
            raise RunnerError(f"no such container: {container}") from None

    async def image(self, image: str, policy: PullPolicy) -> ImageInfo:
        if image in self.images:
            return self.images[image]
        if policy is PullPolicy.NEVER:
            raise JobError(
                IMAGE_MISSING, f"{image} is not on this node and the pull policy is 'never'"
            )
        if image not in self.pullable:
            raise JobError(IMAGE_MISSING, f"{image} is not on this node and cannot be pulled")
        self.images[image] = ImageInfo(user="")
        return self.images[image]

    async def create(self, spec: ContainerSpec) -> str:
        if spec.image not in self.images:
            raise RunnerError(f"cannot create the container: no such image: {spec.image}")
        container = f"fake{next(self._ids):06d}"
        self.containers[container] = self.created[container] = FakeContainer(spec=spec)
        return container

    async def put_archive(self, container: str, path: str, tar: bytes) -> None:
        box = self._get(container)
        if not box.writable(path):
            raise RunnerError(f"cannot place files at {path}: container rootfs is marked read-only")
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            for member in archive.getmembers():
                if member.isdir():
                    box.dirs[posixpath.normpath(posixpath.join(path, member.name))] = member.uid
                if member.isfile():
                    handle = archive.extractfile(member)
                    data = handle.read() if handle else b""
                    box.files[posixpath.normpath(posixpath.join(path, member.name))] = data

    async def start(self, container: str) -> None:
        box = self._get(container)
        box.started = True
        box.task = asyncio.create_task(self._run(box))

    async def _run(self, box: FakeContainer) -> None:
        argv = [*(box.spec.entrypoint or []), *box.spec.command]
        if argv[:2] != ["sh", "-c"] or len(argv) != 3:
            box.finish(_fail(box, f"exec {argv[:1]}: not supported by the twin", 127))
            return
        await _script(box, argv[2])

    async def logs(self, container: str) -> AsyncIterator[tuple[Stream, bytes]]:
        box = self._get(container)
        sent = 0
        while True:
            box.changed.clear()
            while sent < len(box.output):
                yield box.output[sent]
                sent += 1
            if box.exited.is_set() or not box.started:
                return
            await box.changed.wait()

    async def wait(self, container: str) -> ExitInfo:
        box = self._get(container)
        await box.exited.wait()
        return ExitInfo(exit_code=box.exit_code if box.exit_code is not None else -1)

    async def kill(self, container: str, signal: str = "SIGKILL") -> None:
        box = self._get(container)
        self.signals.append((container, signal))
        if not box.task or box.task.done():
            return
        if signal == "SIGTERM" and box.trap is not None:
            if box.trap.strip():
                box.task.cancel()
                box.task = asyncio.create_task(_script(box, box.trap))
            return
        box.task.cancel()
        box.finish(143 if signal == "SIGTERM" else 137)

    async def stopped_by_engine(self, container: str, since: float, within: float) -> bool:
        return container in self.engine_stopped

    def stop_engine(self) -> None:
        """End every running container with 143, as an engine stopping does."""
        for container, box in self.containers.items():
            if box.task and not box.task.done():
                box.task.cancel()
                box.finish(143)
                self.engine_stopped.add(container)

    async def get_archive(self, container: str, path: str, limit: int) -> bytes | None:
        box = self._get(container)
        buffer = io.BytesIO()
        base = posixpath.basename(path.rstrip("/")) or "."
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            folder = tarfile.TarInfo(base)
            folder.type = tarfile.DIRTYPE
            archive.addfile(folder)
            for name, data in sorted(box.files.items()):
                if name.startswith(path.rstrip("/") + "/"):
                    info = tarfile.TarInfo(posixpath.join(base, name[len(path) :].lstrip("/")))
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        raw = buffer.getvalue()
        return None if len(raw) > limit + TAR_OVERHEAD else raw

    async def volume_usage(self, container: str, limit: int) -> int | None:
        box = self._get(container)
        roots = [v.rstrip("/") + "/" for v in box.spec.volumes]
        return sum(len(d) for n, d in box.files.items() if any(n.startswith(r) for r in roots))

    async def remove(self, container: str) -> None:
        box = self.containers.pop(container, None)
        if box is None:
            return
        if box.task and not box.task.done():
            box.task.cancel()
        box.finish(137)
        self.removed.append(container)

    async def list_labelled(self, labels: dict[str, str]) -> dict[str, dict[str, str]]:
        return {
            cid: dict(box.spec.labels)
            for cid, box in self.containers.items()
            if all(box.spec.labels.get(k) == v for k, v in labels.items())
        }

    async def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self.volumes.setdefault(name, VolumeInfo(labels=dict(labels), created=datetime.now(UTC)))

    async def volume(self, name: str) -> VolumeInfo | None:
        return self.volumes.get(name)

    async def remove_volume(self, name: str) -> None:
        self.volumes.pop(name, None)

    async def close(self) -> None:
        for container in list(self.containers):
            await self.remove(container)


async def _script(box: FakeContainer, script: str) -> None:
    """Run ``script``'s statements, then end the container (0, or the failing code)."""
    try:
        for words in _statements(script):
            await _statement(box, words)
        box.finish(0)
    except _ExitError as stop:
        box.finish(stop.code)


def _statements(script: str) -> list[list[str]]:
    """The words of each ``;``- or newline-separated statement (quotes kept together)."""
    lexer = shlex.shlex(script.replace("\n", ";"), posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    statements: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) == {";"}:
            statements.append([])
        else:
            statements[-1].append(token)
    return [words for words in statements if words]


def _fail(box: FakeContainer, message: str, code: int) -> int:
    box.emit("stderr", f"sh: {message}\n".encode())
    return code


async def _statement(box: FakeContainer, words: list[str]) -> None:
    name, args = words[0], words[1:]
    if name == "echo":
        if args[-1:] == [">&2"]:
            box.emit("stderr", (" ".join(args[:-1]) + "\n").encode())
        elif len(args) >= 2 and args[-2] == ">":
            _write(box, args[-1], (" ".join(args[:-2]) + "\n").encode())
        else:
            box.emit("stdout", (" ".join(args) + "\n").encode())
    elif name == "cat":
        if args[0] not in box.files:
            raise _ExitError(_fail(box, f"cat: {args[0]}: No such file or directory", 1))
        box.emit("stdout", box.files[args[0]])
    elif name == "cp":
        if args[0] not in box.files:
            raise _ExitError(_fail(box, f"cp: {args[0]}: No such file or directory", 1))
        _write(box, args[1], box.files[args[0]])
    elif name == "sleep":
        await asyncio.sleep(float(args[0]))
    elif name == "exit":
        raise _ExitError(int(args[0]) if args else 0)
    elif name == "set":
        pass  # the twin always stops at the first failing statement
    elif name == "trap":
        box.trap = args[0] if args[1:] == ["TERM"] else box.trap
    elif name in ("true", "false"):
        if name == "false":
            raise _ExitError(1)
    else:
        raise _ExitError(_fail(box, f"{name}: not found", 127))


def _write(box: FakeContainer, path: str, data: bytes) -> None:
    if not box.writable(path):
        raise _ExitError(_fail(box, f"cannot create {path}: Read-only file system", 2))
    box.files[path] = data
