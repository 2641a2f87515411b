"""Executor processes: SIGKILL loses nothing, SIGTERM drains, orphans are reaped at start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiodocker
import pytest

from shoal.executor.engines.docker.runner import LABEL_NODE
from shoal.model import JobState

from .conftest import Broker, StartExecutor
from .support import BASE_IMAGE, docker_job

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq, pytest.mark.timeout(120)]


@dataclass
class ExecutorProcess:
    """``python -m shoal.executor`` in a child process."""

    process: asyncio.subprocess.Process
    node_id: str
    lines: list[str]
    reader: asyncio.Task[None]
    changed: asyncio.Condition

    @property
    def executor_prefix(self) -> str:
        return f"{self.node_id}-{self.process.pid}-"

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    async def wait_for_line(self, text: str, within: float) -> None:
        """Wait until the process logged a line containing ``text``."""
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(lambda: any(text in line for line in self.lines))

    async def exit_code(self, within: float) -> int:
        return await asyncio.wait_for(self.process.wait(), within)


@pytest.fixture
async def spawn(broker_url: str) -> AsyncIterator[object]:
    """Start executor processes; each is killed at the end of the test if still running."""
    started: list[ExecutorProcess] = []

    async def start(node_id: str | None = None, **env: str) -> ExecutorProcess:
        node = node_id or f"proc-{uuid.uuid4().hex[:8]}"
        variables = {
            **os.environ,
            "SHOAL_BROKER_URL": broker_url,
            "SHOAL_NODE_ID": node,
            "SHOAL_SLOTS": "1",
            "SHOAL_CLAIMS": "false",
            "SHOAL_LOG_FORMAT": "json",
            "SHOAL_PULL_POLICY": "never",
            "SHOAL_ALLOWED_IMAGES": BASE_IMAGE,
            "SHOAL_LOG_FLUSH_SECONDS": "0.05",
            **env,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal.executor",
            env=variables,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        lines: list[str] = []
        changed = asyncio.Condition()

        async def read() -> None:
            assert process.stderr is not None
            async for raw in process.stderr:
                async with changed:
                    lines.append(raw.decode(errors="replace"))
                    changed.notify_all()

        handle = ExecutorProcess(process, node, lines, asyncio.create_task(read()), changed)
        started.append(handle)
        try:
            await handle.wait_for_line("executor.ready", 30)
        except TimeoutError:
            pytest.fail("executor process did not start:\n" + "".join(lines))
        return handle

    yield start
    for handle in started:
        if handle.process.returncode is None:  # a failed test: shut down cleanly if it can
            handle.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(handle.process.wait(), 15)
            except TimeoutError:
                handle.process.kill()
                await handle.process.wait()
        handle.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handle.reader


async def node_containers(node_id: str) -> list[str]:
    docker = aiodocker.Docker()
    try:
        found = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL_NODE}={node_id}"]}
        )
        return [str(c.id) for c in found]
    finally:
        await docker.close()


async def test_sigkill_loses_nothing_and_orphans_are_reaped(
    broker: Broker, start_executor: StartExecutor, spawn: object
) -> None:
    first: ExecutorProcess = await spawn()  # type: ignore[operator]
    job = docker_job("echo started; sleep 3; echo done")
    await broker.submit(job)
    await broker.events.wait(job.id, lambda e: e.kind == "log", 30)
    first.signal(signal.SIGKILL)
    assert await first.exit_code(10) == -signal.SIGKILL
    assert await node_containers(first.node_id), "the killed executor left its container"

    second = await start_executor()
    final = await broker.events.terminal(job.id, within=30)
    assert final.state is JobState.COMPLETED
    assert final.executor == second.executor.node.executor_id
    mine = [e for e in broker.events.of(job.id) if e.executor == final.executor]
    assert "".join(e.data for e in mine if e.kind == "log") == "started\ndone\n"

    await start_executor(node_id=first.node_id)
    assert await node_containers(first.node_id) == []


async def test_orphan_reaped_at_start(broker: Broker, start_executor: StartExecutor) -> None:
    node = f"orphan-{uuid.uuid4().hex[:8]}"
    docker = aiodocker.Docker()
    try:
        container = await docker.containers.create(
            {"Image": BASE_IMAGE, "Cmd": ["sleep", "60"], "Labels": {LABEL_NODE: node}}
        )
        await container.start()
    finally:
        await docker.close()
    assert await node_containers(node)
    await start_executor(node_id=node)
    assert await node_containers(node) == []


async def test_sigterm_lets_running_job_finish(broker: Broker, spawn: object) -> None:
    process: ExecutorProcess = await spawn(SHOAL_DRAIN_TIMEOUT="20")  # type: ignore[operator]
    job = docker_job("echo started; sleep 2; echo finished")
    await broker.submit(job)
    await broker.events.wait(job.id, lambda e: e.kind == "log", 30)
    process.signal(signal.SIGTERM)
    final = await broker.events.terminal(job.id, within=20)
    assert final.state is JobState.COMPLETED
    assert final.executor is not None
    assert final.executor.startswith(process.executor_prefix)
    assert await process.exit_code(20) == 0


async def test_sigterm_past_deadline_requeues(
    broker: Broker, start_executor: StartExecutor, spawn: object
) -> None:
    process: ExecutorProcess = await spawn(SHOAL_DRAIN_TIMEOUT="0.5")  # type: ignore[operator]
    job = docker_job("echo started; sleep 4; echo finished")
    await broker.submit(job)
    await broker.events.wait(job.id, lambda e: e.kind == "log", 30)
    process.signal(signal.SIGTERM)
    assert await process.exit_code(20) == 0
    assert await node_containers(process.node_id) == []
    first_run = [
        e for e in broker.events.of(job.id) if e.executor == broker.events.of(job.id)[0].executor
    ]
    assert [e.state for e in first_run if e.kind == "state"] == [JobState.RUNNING]

    second = await start_executor()
    final = await broker.events.terminal(job.id, within=30)
    assert final.state is JobState.COMPLETED
    assert final.executor == second.executor.node.executor_id


async def test_second_signal_exits_at_once(broker: Broker, spawn: object) -> None:
    process: ExecutorProcess = await spawn(SHOAL_DRAIN_TIMEOUT="60")  # type: ignore[operator]
    job = docker_job("echo started; sleep 60")
    await broker.submit(job)
    await broker.events.wait(job.id, lambda e: e.kind == "log", 30)
    process.signal(signal.SIGTERM)
    await process.wait_for_line("executor.draining", 10)
    process.signal(signal.SIGTERM)
    assert await process.exit_code(15) == 130
    assert await node_containers(process.node_id) == []
