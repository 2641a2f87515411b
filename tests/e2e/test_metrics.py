"""``/metrics``, ``/livez`` and ``/readyz`` of a requester and an executor run as processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import wasmtime

from .conftest import ROOT, SPINS, System, _service

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def fetch(port: int, path: str) -> tuple[int, str]:
    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await asyncio.to_thread(get)


@pytest.fixture
async def watched(vhost_url: str, tmp_path: Path) -> AsyncIterator[tuple[System, int, int]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOAL_BROKER_URL": vhost_url,
        "SHOAL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}",
        "SHOAL_NODE_ID": f"metrics-{uuid.uuid4().hex[:8]}",
        "SHOAL_LOG_FORMAT": "json",
        "SHOAL_QUEUE_DEPTH_EVERY": "0.2",
        "SHOAL_HEARTBEAT_EVERY": "0.5",
    }
    requester_port, executor_port = free_port(), free_port()
    async with (
        _service(
            "requester", {**env, "SHOAL_METRICS_PORT": str(requester_port)}, "requester.started"
        ),
        _service("executor", {**env, "SHOAL_METRICS_PORT": str(executor_port)}, "executor.ready"),
    ):
        yield System(env), requester_port, executor_port


async def test_services_expose_health_and_job_metrics(
    watched: tuple[System, int, int], tmp_path: Path
) -> None:
    system, requester_port, executor_port = watched
    for port in (requester_port, executor_port):
        assert await fetch(port, "/livez") == (200, "ok\n")
        assert await fetch(port, "/readyz") == (200, "ready\n")
    done = await system.shoal("exec", "python", "--wait", "--", "python", "-c", "print(1)")
    assert done.code == 0, done.err
    gpu = tmp_path / "gpu.json"
    params = {"version": "3.11", "command": "python", "arguments": ["python", "-c", "pass"]}
    job = {"tasks": [{"engine": {"type": "python", "params": params}, "resources": {"gpu": 1}}]}
    await asyncio.to_thread(gpu.write_text, json.dumps(job))
    refused = await system.shoal("job", "run", str(gpu))
    assert refused.code == 2, refused.err
    _, executor_text = await fetch(executor_port, "/metrics")
    assert 'shoal_jobs_finished_total{job_type="python",state="completed"} 1.0' in executor_text
    assert 'shoal_jobs_started_total{job_type="python"}' in executor_text
    assert 'shoal_executor_slots{state="free"}' in executor_text
    assert "shoal_job_queue_wait_seconds_count" in executor_text
    _, requester_text = await fetch(requester_port, "/metrics")
    assert "shoal_submissions_received_total 2.0" in requester_text
    assert 'shoal_submissions_total{outcome="accepted",reason=""} 1.0' in requester_text
    assert 'shoal_submissions_total{outcome="refused",reason="UnsupportedError"} 1.0' in (
        requester_text
    )
    assert 'shoal_queue_messages_ready{queue="shoal.compute"}' in requester_text
    for queue in ("shoal.compute", "shoal.compute.wasm", "shoal.compute.wasm.python"):
        assert f'shoal_queue_messages_unacked{{queue="{queue}"}}' in requester_text
    assert 'shoal_queue_messages_unacked{queue="shoal.submit"}' not in requester_text
    assert "shoal_submission_round_size_count" in requester_text


async def test_unacknowledged_deliveries_are_exported_per_compute_queue(
    watched: tuple[System, int, int], tmp_path: Path
) -> None:
    """A running wasm job counts in ``shoal.compute.wasm``'s unacked gauge, not in
    ``shoal.compute``'s (from the executor's heartbeats)."""
    system, requester_port, _ = watched
    module = tmp_path / "spin.wasm"
    await asyncio.to_thread(module.write_bytes, bytes(wasmtime.wat2wasm(SPINS)))
    done = await system.shoal("exec", "wasm", "--code", str(module), "--id-only")
    assert done.code == 0, done.err
    held = 'shoal_queue_messages_unacked{queue="shoal.compute.wasm"} 1.0'
    try:
        async with asyncio.timeout(30):
            while True:
                _, text = await fetch(requester_port, "/metrics")
                if held in text:
                    break
                await asyncio.sleep(0.2)  # the next heartbeat, the next depth read
        assert 'shoal_queue_messages_unacked{queue="shoal.compute"} 0.0' in text
    finally:
        stopped = await system.shoal("job", "stop", done.out.strip())
        assert stopped.code == 0, stopped.err
