"""The requester fixtures (private vhost, in-process requester), and a CLI runner."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.requester.conftest import (  # noqa: F401  (fixtures)
    amqp_url,
    client,
    connection,
    requester,
    requester_settings,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Shoal:
    """Runs ``shoal ARGS`` as a subprocess against the test vhost."""

    broker_url: str
    cwd: Path

    async def __call__(self, *args: str, **env: str) -> Done:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal.client.main",
            *args,
            cwd=self.cwd,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "SHOAL_BROKER_URL": self.broker_url,
                **env,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode is not None
        return Done(process.returncode, out.decode(), err.decode())


@pytest.fixture
def shoal(amqp_url: str, tmp_path: Path) -> Shoal:  # noqa: F811
    """``shoal ARGS`` against this session's vhost."""
    return Shoal(amqp_url, tmp_path)
