"""An executor's ``/readyz``: 503 while its broker is away and 200 again once it has
reconnected and consumes; 503 from the moment it drains; ``/livez`` stays broker-free."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiodocker
import pytest

from shoal.executor.engines.docker.docker_runner import DockerRunner
from shoal.executor.service import Executor, serve
from tests.client.cutting_proxy import cutting_proxy
from tests.readiness import (
    port_in,
    probe,
    ready_through_an_outage,
    readyz_becomes,
    upstream_of,
    via_port,
)

from .conftest import Broker, StartExecutor, executor_settings
from .support import docker_job

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq, pytest.mark.timeout(60)]


async def test_readyz_is_503_while_the_broker_is_away_and_200_once_back(
    broker_url: str, start_executor: StartExecutor, tmp_path: Path
) -> None:
    port_file = tmp_path / "metrics-port"
    async with cutting_proxy(upstream_of(broker_url), cut_at=0) as proxy:
        running = await start_executor(
            broker_url=via_port(broker_url, proxy.port),
            metrics_port="auto",
            metrics_port_file=port_file,
        )
        try:
            await ready_through_an_outage(port_in(port_file), proxy)
        finally:
            proxy.come_back()  # an executor stops cleanly only with its broker there
            await running.stop()
    assert not port_file.exists()


async def test_a_draining_executor_is_not_ready(
    broker: Broker, start_executor: StartExecutor, tmp_path: Path
) -> None:
    port_file = tmp_path / "metrics-port"
    running = await start_executor(metrics_port="auto", metrics_port_file=port_file)
    port = port_in(port_file)
    job = docker_job("sleep 2")
    await broker.submit(job)
    await broker.events.running(job.id)
    running.stopping.set()
    await readyz_becomes(port, 503, within=2.5, saying="draining")
    assert await probe(port, "/livez") == (200, "ok\n")
    await asyncio.wait_for(running.task, 30)


async def test_readyz_is_503_while_the_docker_engine_does_not_answer(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port_file = tmp_path / "metrics-port"
    settings = executor_settings(broker_url, metrics_port="auto", metrics_port_file=port_file)
    runner = DockerRunner.connect(settings.docker_url, pull_timeout=settings.pull_timeout)
    stopping = asyncio.Event()
    ready: asyncio.Future[Executor] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stopping, runner=runner, ready=ready.set_result))
    try:
        await asyncio.wait_for(asyncio.shield(ready), 30)
        port = port_in(port_file)
        assert await probe(port, "/readyz") == (200, "ready\n")
        engine = runner.docker
        gone = aiodocker.Docker(url=f"unix://{tmp_path / 'no-docker.sock'}")
        monkeypatch.setattr(runner, "_docker", gone)
        try:
            body = await readyz_becomes(port, 503, saying="the Docker engine does not answer")
            assert await probe(port, "/livez") == (200, "ok\n")
        finally:
            monkeypatch.setattr(runner, "_docker", engine)
            await gone.close()
        assert body == "not ready: the Docker engine does not answer: DockerError\n"
        assert await readyz_becomes(port, 200) == "ready\n"
    finally:
        stopping.set()
        await asyncio.wait_for(task, 60)
