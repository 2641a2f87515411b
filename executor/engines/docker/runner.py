"""The container-runner port: the few things the executor asks of a container engine.

``docker_runner.DockerRunner`` implements it with aiodocker; ``memory_runner.MemoryRunner`` is
its in-memory twin for the fast tests. Both pass ``tests/executor/test_runner_contract.py``.

Errors: an image that cannot be had raises ``JobError(IMAGE_MISSING, ...)``; any other
engine failure raises :class:`RunnerError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shoal.executor.engine import EngineError, ExitInfo, Stream
from shoal.executor.settings import PullPolicy

LABEL_JOB = "shoal.job_id"
LABEL_NODE = "shoal.node"
LABEL_EXECUTOR = "shoal.executor"

TAR_OVERHEAD = 64 * 1024
"""Bytes of tar headers and padding allowed on top of a result's size limit."""

ENGINE_GONE = "the Docker engine stopped or restarted while the job ran"
"""Why a job failed whose container the engine ended as it went away."""


class RunnerError(EngineError):
    """The container engine failed an operation."""


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one job's container."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    """``None`` keeps the image's entrypoint."""
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str = ""
    """``""`` keeps the image's user."""
    labels: dict[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()
    """Anonymous volumes (writable, removed with the container)."""
    tmpfs: dict[str, str] = field(default_factory=dict)
    named_volumes: dict[str, str] = field(default_factory=dict)
    """Named volume → mount point, writable (the install step's environment)."""
    read_only_volumes: dict[str, str] = field(default_factory=dict)
    """Named volume → mount point, read-only (a job's prebuilt environment)."""
    read_only_files: dict[str, str] = field(default_factory=dict)
    """Operator-chosen host file → path in the container, mounted read-only (the CA bundle)."""
    memory: int = 512 * 1024**2
    nano_cpus: int = 1_000_000_000
    pids_limit: int = 512
    network: str = "none"
    """``none``, ``bridge`` (full network) or the name of a Docker network."""
    file_size_limit: int | None = None
    """``RLIMIT_FSIZE``: no file the job writes grows past this many bytes."""


@dataclass(frozen=True)
class ImageInfo:
    """What the executor needs to know about an image."""

    user: str
    """The image's configured USER (``""``: root)."""
    id: str = ""
    """The engine's image ID (changes whenever the image is rebuilt)."""


@dataclass(frozen=True)
class VolumeInfo:
    """A named volume: its labels and when it was created."""

    labels: dict[str, str]
    created: datetime


class ContainerRunner(Protocol):
    """A container engine, reduced to what running one job needs."""

    async def image(self, image: str, policy: PullPolicy) -> ImageInfo:
        """The image's info, pulling it when missing and ``policy`` allows."""
        ...

    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; returns its ID."""
        ...

    async def put_archive(self, container: str, path: str, tar: bytes) -> None:
        """Extract the tar ``tar`` at ``path`` (a volume: the root is read-only)."""
        ...

    async def start(self, container: str) -> None:
        """Start a created container."""
        ...

    def logs(self, container: str) -> AsyncIterator[tuple[Stream, bytes]]:
        """Output since start, in order, following until the container exits."""
        ...

    async def wait(self, container: str) -> ExitInfo:
        """Wait for the container to exit."""
        ...

    async def kill(self, container: str, signal: str = "SIGKILL") -> None:
        """Send ``signal`` to a running container's init (no error if it already exited)."""
        ...

    async def stopped_by_engine(self, container: str, since: float, within: float) -> bool:
        """Whether the engine itself ended ``container`` as it went away: it killed the
        container after ``since`` (a Unix time) and stopped answering within ``within``
        seconds (it was stopping or restarting). Asked only of a container that exited
        non-zero without a signal from the executor."""
        ...

    async def get_archive(self, container: str, path: str, limit: int) -> bytes | None:
        """The tar of ``path``; ``None`` when it is larger than ``limit`` bytes.

        Reads at most about ``limit`` bytes and then abandons the archive: the engine is never
        left blocked writing the rest.
        """
        ...

    async def volume_usage(self, container: str, limit: int) -> int | None:
        """Bytes held by the container's anonymous volumes (counting may stop past ``limit``);
        ``None`` when this engine cannot tell."""
        ...

    async def remove(self, container: str) -> None:
        """Remove the container and its anonymous volumes, running or not."""
        ...

    async def list_labelled(self, labels: dict[str, str]) -> dict[str, dict[str, str]]:
        """All containers (any state) carrying every label in ``labels``: ID → all labels."""
        ...

    async def create_volume(self, name: str, labels: dict[str, str]) -> None:
        """Create the named volume ``name`` (nothing happens when it exists)."""
        ...

    async def volume(self, name: str) -> VolumeInfo | None:
        """The named volume ``name``, or None when there is none."""
        ...

    async def remove_volume(self, name: str) -> None:
        """Remove the named volume ``name`` (no error when it is gone)."""
        ...

    async def close(self) -> None:
        """Release the engine connection."""
        ...
