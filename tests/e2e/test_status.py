"""``shoal status`` against real services: who is alive, and the queues' depth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from shoal.executor.engines.docker.network import GatewayError, remove_proxy_rules
from shoal.images import runtime_images

from .conftest import ROOT, SPINS, System, _until_logged

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

BEAT = 0.5
"""Seconds between heartbeats here: a service drops out after three missed (1.5 s)."""


@pytest.fixture
def system_env() -> dict[str, str]:
    return {"SHOAL_HEARTBEAT_EVERY": str(BEAT)}


async def status(system: System) -> dict[str, Any]:
    done = await system.shoal("status", "--output-format", "json")
    assert done.code == 0, done.err
    found: dict[str, Any] = json.loads(done.out)
    return found


async def until(
    system: System, wanted: Callable[[dict[str, Any]], bool], seconds: float = 60
) -> dict[str, Any]:
    """The first status that satisfies ``wanted`` (within ``seconds``)."""
    async with asyncio.timeout(seconds):
        while True:
            found = await status(system)
            if wanted(found):
                return found
            await asyncio.sleep(BEAT)  # the view changes with the next heartbeat


def roles(found: dict[str, Any]) -> list[str]:
    return sorted(node["role"] for node in found["nodes"])


async def test_status_shows_the_requester_the_executor_and_queue_depths(system: System) -> None:
    found = await until(system, lambda f: roles(f) == ["executor", "requester"])
    executor = next(n for n in found["nodes"] if n["role"] == "executor")
    assert executor["host"] == system.env["SHOAL_NODE_ID"]
    assert executor["engines"] == ["docker", "wasm", "wasm-python"]
    assert executor["images"] == sorted(runtime_images()), "the set-up builds every one"
    assert executor["slots"] >= 1
    assert executor["running"] == []  # the test's account is the requester's: an operator
    assert executor["draining"] is False
    assert executor["interval"] == BEAT
    assert found["misses"] == 3
    queues = {q["name"]: q for q in found["queues"]}
    assert queues["shoal.compute"]["consumers"] == 1
    assert queues["shoal.compute"]["unacknowledged"] == 0
    assert queues["shoal.submit"]["unacknowledged"] is None
    assert {"shoal.submit", "shoal.api", "shoal.heartbeats", "shoal.dead"} <= set(queues)

    done = await system.shoal("status")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0].split() == [
        "NODE", "ID", "ROLE", "VERSION", "ENGINES", "SLOTS", "RUNNING", "LAST", "SEEN"
    ]  # fmt: skip
    assert any(line.startswith(executor["node_id"]) and "docker" in line for line in lines)
    assert any(line.startswith("shoal.compute ") for line in lines)


def unacked(found: dict[str, Any]) -> dict[str, int | None]:
    return {q["name"]: q["unacknowledged"] for q in found["queues"]}


async def test_a_held_delivery_counts_for_the_queue_it_came_from(
    system: System, tmp_path: Path
) -> None:
    """A running wasm job is an unacknowledged delivery of ``shoal.compute.wasm``, not of
    ``shoal.compute``, in the JSON and in the table."""
    module = tmp_path / "spin.wasm"
    await asyncio.to_thread(module.write_bytes, bytes(wasmtime.wat2wasm(SPINS)))
    done = await system.shoal("exec", "wasm", "--code", str(module), "--id-only")
    assert done.code == 0, done.err
    job_id = done.out.strip()
    try:
        found = await until(system, lambda f: unacked(f)["shoal.compute.wasm"] == 1)
        assert unacked(found)["shoal.compute"] == 0
        assert unacked(found)["shoal.compute.wasm.python"] == 0
        assert unacked(found)["shoal.submit"] is None
        executor = next(n for n in found["nodes"] if n["role"] == "executor")
        assert executor["held_by_queue"] == {"shoal.compute.wasm": 1}
        assert executor["held"] == 1
        table = await system.shoal("status")
        assert table.code == 0, table.err
        rows = {line.split()[0]: line.split()[1:] for line in table.out.splitlines() if line}
        assert rows["shoal.compute.wasm"][:2] == ["0", "1"]  # READY, UNACKED
        assert rows["shoal.compute"][:2] == ["0", "0"]
    finally:
        stopped = await system.shoal("job", "stop", job_id)
        assert stopped.code == 0, stopped.err
    await until(system, lambda f: unacked(f)["shoal.compute.wasm"] == 0)


async def start_executor(system: System, **env: str) -> tuple[asyncio.subprocess.Process, str]:
    """A second executor on a node of its own (once it is ready), and that node's ID."""
    node = f"gone-{uuid.uuid4().hex[:8]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal.client.main",
        "serve",
        "executor",
        cwd=ROOT,
        env={**system.env, "SHOAL_NODE_ID": node, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await _until_logged(process, "executor.ready", "executor")
    return process, node


def executor_hosts(found: dict[str, Any]) -> set[str]:
    return {n["host"] for n in found["nodes"] if n["role"] == "executor"}


async def test_an_executor_that_stops_beating_drops_out(system: System) -> None:
    second, node = await start_executor(system)
    try:
        await until(system, lambda f: node in executor_hosts(f))
        second.send_signal(signal.SIGKILL)  # no goodbye: it just stops beating
        await second.wait()
        found = await until(system, lambda f: node not in executor_hosts(f))
        assert executor_hosts(found) == {system.env["SHOAL_NODE_ID"]}
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
        with contextlib.suppress(GatewayError):  # its node never starts again to reap it
            await remove_proxy_rules(node)


async def test_an_executor_that_stopped_leaves_the_view_at_once(system: System) -> None:
    """Its heartbeat would keep it listed for three minutes; its broker connection is gone."""
    second, node = await start_executor(system, SHOAL_HEARTBEAT_EVERY="60")
    try:
        await until(system, lambda f: node in executor_hosts(f))
        second.send_signal(signal.SIGTERM)
        assert await second.wait() == 0
        assert executor_hosts(await status(system)) == {system.env["SHOAL_NODE_ID"]}
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
