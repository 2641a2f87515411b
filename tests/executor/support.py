"""Helpers shared by the executor tests: compute deliveries, docker jobs and inline inputs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import io
import socket
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from aiohttp import web

from shoal.executor.addresses import is_internal
from shoal.executor.engines.docker.engine import DockerEngine
from shoal.executor.engines.docker.gateway import HttpGateway
from shoal.executor.engines.docker.runner import ContainerRunner
from shoal.executor.events import EventSink
from shoal.executor.execution import Node
from shoal.executor.settings import ExecutorSettings
from shoal.images import DEFAULT_PYTHON_VERSION, python_image
from shoal.inline import inline_source
from shoal.model import Job

BASE_IMAGE = "shoal/base:bookworm"
PYTHON_IMAGE = python_image(DEFAULT_PYTHON_VERSION)


@dataclass
class Delivery:
    """A compute delivery as the executor sees it; records how it was settled."""

    body: bytes
    redelivered: bool = False
    delivery_tag: int = 1
    settled: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def _settle(self, how: str) -> None:
        self.settled.append(how)
        self.done.set()

    async def ack(self) -> None:
        await self._settle("ack")

    async def nack(self, requeue: bool = True) -> None:
        await self._settle("requeue" if requeue else "nack")

    async def reject(self, requeue: bool = False) -> None:
        await self._settle("reject")


def docker_job(
    script: str,
    *,
    image: str = BASE_IMAGE,
    argv: list[str] | None = None,
    dep_cache: bool = False,
    **task: Any,
) -> Job:
    """A docker job running ``sh -c script`` (or ``argv``), with extra task fields;
    ``dep_cache`` asks for a prebuilt environment as the python job type does."""
    params: dict[str, Any] = {"image": image, "dep_cache": dep_cache}
    if argv is None:
        params |= {"entrypoint": ["sh", "-c"], "parameters": [script]}
    else:
        params |= {"entrypoint": argv[:1], "parameters": argv[1:]}
    return Job.model_validate({"tasks": [{"engine": {"type": "docker", "params": params}, **task}]})


def tar_of(files: dict[str, bytes]) -> bytes:
    """A tar archive holding ``files`` (mode 0644)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def targz(files: dict[str, bytes]) -> str:
    """Base64 of a tar.gz holding ``files``."""
    return base64.b64encode(gzip.compress(tar_of(files))).decode()


def inline_input(kind: str, files: dict[str, bytes], target: str) -> dict[str, Any]:
    """An inline input (``file``: one member placed at target; ``dir``: under it)."""
    return {"source": inline_source(kind, targz(files)), "target": target}


def untar(data: str) -> dict[str, bytes]:
    """The regular files of a base64 tar.gz (a result event's output)."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(data)), mode="r:gz") as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                found[member.name] = handle.read()
    return found


def node_address() -> str:
    """This host's own address on a non-loopback interface (eth0 here: outside the private
    ranges), where a server on 0.0.0.0 answers."""
    for name, entries in psutil.net_if_addrs().items():
        for entry in entries:
            if name != "lo" and entry.family == socket.AF_INET and not is_internal(entry.address):
                return entry.address
    raise AssertionError("this host has no non-private IPv4 address to attack")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def http_server(handler: Handler, host: str) -> AsyncIterator[int]:
    """An HTTP server answering every GET with ``handler`` on ``host`` (a free port);
    yields the port."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def docker_node(
    settings: ExecutorSettings,
    runner: ContainerRunner,
    sink: EventSink,
    gateway: HttpGateway,
    executor_id: str,
) -> Node:
    """A node serving the Docker engine on ``runner`` (Docker itself, or its twin)."""
    engine = DockerEngine(settings, runner, gateway, executor_id)
    return Node(settings, {engine.name: engine}, sink, executor_id)


def docker_of(node: Node) -> DockerEngine:
    """The node's Docker engine."""
    engine = node.engines["docker"]
    assert isinstance(engine, DockerEngine)
    return engine
