"""The attack: a job writes far past the output limit. It fails, and the node keeps working.

Before, ``get_archive`` left the engine's response unread: dockerd blocked writing the
archive while holding the container's lock, the forced remove waited for ever, the job stayed
``running`` and SIGTERM could not stop the executor.
"""

from __future__ import annotations

import time

import pytest

from shoal.executor.engines.docker.docker_runner import DockerRunner
from shoal.executor.engines.docker.runner import LABEL_NODE
from shoal.model import JobState

from .conftest import Broker, StartExecutor
from .support import docker_job

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq, pytest.mark.timeout(180)]


async def test_output_past_the_limit_fails_and_the_next_job_runs(
    broker: Broker, start_executor: StartExecutor
) -> None:
    running = await start_executor(slots=1, job_output_limit=1024**2, remove_timeout=20.0)
    flood = docker_job("head -c 300000000 /dev/zero > /outputs/big; echo written")
    after = docker_job("echo next > /outputs/n.txt")
    await broker.submit(flood)
    await broker.submit(after)
    final = await broker.events.terminal(flood.id, within=120)
    assert final.state is JobState.FAILED
    assert final.error is not None
    assert final.error.startswith("output too large: output 'outputs' (/outputs) left out")
    assert "1.0 MiB output limit" in final.error
    ended = time.monotonic()
    following = await broker.events.terminal(after.id, within=60)
    assert following.state is JobState.COMPLETED
    assert time.monotonic() - ended < 15, "the next job ran within seconds"
    runner = DockerRunner.connect()
    try:
        node = running.settings.node_id
        assert await runner.list_labelled({LABEL_NODE: node}) == {}, "no container left"
    finally:
        await runner.close()
    began = time.monotonic()
    await running.stop()
    assert time.monotonic() - began < 15
