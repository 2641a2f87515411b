"""The whole system as a user runs it: ``shoal serve requester``, ``shoal serve executor`` and
the ``shoal`` CLI as separate processes, on a private RabbitMQ vhost and a fresh SQLite store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.conftest import Done
from tests.requester.services import rabbit_vhost

ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 60
SPINS = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
"""A WASI module (text) that runs until it is stopped."""


@pytest.fixture(scope="module")
def vhost_url() -> Iterator[str]:
    """A private vhost for this module's services."""
    with rabbit_vhost() as url:
        yield url


@dataclass(frozen=True)
class System:
    """Runs ``shoal ARGS`` from the repository root against the running services."""

    env: dict[str, str]

    async def _start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal.client.main",
            *args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def shoal(self, *args: str) -> Done:
        """Run ``shoal ARGS`` to its end (two minutes at most)."""
        process = await self._start(*args)
        async with asyncio.timeout(120):
            out, err = await process.communicate()
        assert process.returncode is not None
        return Done(process.returncode, out.decode(), err.decode())

    @contextlib.asynccontextmanager
    async def streaming(self, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
        """``shoal ARGS`` running while inside; killed if still running at the end."""
        process = await self._start(*args)
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _until_logged(process: asyncio.subprocess.Process, event: str, role: str) -> None:
    """Read the service's JSON log lines until ``event`` (its start) appears."""
    assert process.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(READY_SECONDS):
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise AssertionError(f"{role} exited before it was ready:\n{''.join(seen)}")
            seen.append(line)
            with contextlib.suppress(ValueError):
                if json.loads(line).get("event") == event:
                    return


async def _drain(stream: asyncio.StreamReader | None, lines: list[str]) -> None:
    while stream is not None and (line := await stream.readline()):
        lines.append(line.decode())


@contextlib.asynccontextmanager
async def _service(role: str, env: dict[str, str], ready: str) -> AsyncIterator[list[str]]:
    """``shoal serve ROLE`` until the end of the block; yields the log lines it writes once
    ready (read as they come)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal.client.main",
        "serve",
        role,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _until_logged(process, ready, role)
        lines: list[str] = []
        drain = asyncio.create_task(_drain(process.stderr, lines))
        yield lines
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                await process.wait()
        with contextlib.suppress(NameError):
            drain.cancel()


@pytest.fixture
def system_env() -> dict[str, str]:
    """Settings of a module's services on top of the defaults below (a module overrides it)."""
    return {}


def services_env(vhost_url: str, database_url: str, more: dict[str, str]) -> dict[str, str]:
    """The environment of the services and the CLI: this one's vhost and store, then ``more``."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOAL_BROKER_URL": vhost_url,
        "SHOAL_DATABASE_URL": database_url,
        "SHOAL_NODE_ID": f"e2e-{uuid.uuid4().hex[:8]}",
        "SHOAL_LOG_FORMAT": "json",
        # the test's package index runs on this host, on a free port, which jobs may not
        # reach by default
        "SHOAL_ALLOW_PRIVATE_ADDRESSES": "true",
        "SHOAL_ALLOWED_PORTS": "1024-65535",
        **more,
    }


@pytest.fixture
async def system(
    vhost_url: str, tmp_path: Path, system_env: dict[str, str]
) -> AsyncIterator[System]:
    """A requester and an executor, started as a user starts them, stopped with SIGTERM."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = services_env(vhost_url, database, system_env)
    async with (
        _service("requester", env, "requester.started"),
        _service("executor", env, "executor.ready"),
    ):
        yield System(env)
