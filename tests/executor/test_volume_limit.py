"""The attack: a job fills its volumes to fill the node's disk. It is stopped at the limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shoal.executor.engines.docker.gateway import MemoryGateway
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ContainerRunner, ContainerSpec, ImageInfo
from shoal.executor.engines.docker.volumes import BLOCK, disk_usage, folders_usage
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl, execute
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.model import JobState
from shoal.wire import utcnow

from .conftest import Broker, StartExecutor
from .support import BASE_IMAGE, docker_job, docker_node, inline_input, tar_of

pytestmark = pytest.mark.timeout(120)
MiB = 1024**2


def test_usage_counts_blocks_and_entries(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(b"x" * 100_000)
    for n in range(10):
        (tmp_path / f"empty{n}").touch()
    used = disk_usage(str(tmp_path), 10 * MiB)
    assert used >= 100_000 + 10 * BLOCK
    with (tmp_path / "sparse").open("wb") as handle:
        handle.truncate(1024**3)
    assert disk_usage(str(tmp_path), 10 * MiB) < used + 2 * BLOCK


def test_usage_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * 1_000_000)
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "to-outside").symlink_to(outside)
    assert disk_usage(str(volume), 10 * MiB) == BLOCK
    assert folders_usage([str(volume), str(tmp_path / "missing")], 10 * MiB) is None


def test_usage_stops_counting_past_the_limit(tmp_path: Path) -> None:
    for n in range(50):
        folder = tmp_path / f"d{n}"
        folder.mkdir()
        (folder / "f").write_bytes(b"y" * 10_000)
    assert BLOCK * 10 < disk_usage(str(tmp_path), BLOCK * 10) < 100_000


async def test_a_job_over_the_volume_limit_is_killed() -> None:
    settings = ExecutorSettings(
        node_id="unit",
        pull_policy=PullPolicy.NEVER,
        volume_limit=800,
        volume_check_seconds=0.05,
        allowed_images=[BASE_IMAGE],
    )
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    node = docker_node(settings, runner, MemoryEventSink(), MemoryGateway(), "exec-unit")
    job = docker_job(
        "cp /code/big /outputs/big; sleep 20",
        inputs=[inline_input("file", {"big": b"x" * 500}, "/code/big")],
    )
    began = time.monotonic()
    outcome = await execute(job, utcnow(), node, JobControl())
    assert time.monotonic() - began < 10
    assert outcome.state is JobState.FAILED
    assert outcome.error == (
        "output too large: the job's volumes (/outputs, /code, inputs) held more than the "
        "800 B volume limit"
    )
    assert runner.containers == {}


@pytest.mark.docker
@pytest.mark.rabbitmq
async def test_filling_the_volumes_fails_the_job_and_the_next_runs(
    broker: Broker, start_executor: StartExecutor
) -> None:
    await start_executor(slots=1, volume_limit=50 * MiB, volume_check_seconds=0.5)
    flood = docker_job(
        "i=0; while [ $i -lt 200 ]; do head -c 10000000 /dev/zero > /outputs/f$i; "
        "i=$((i+1)); done; sleep 60"
    )
    big_file = docker_job("head -c 100000000 /dev/zero > /outputs/one")
    after = docker_job("echo fine > /outputs/ok.txt")
    for job in (flood, big_file, after):
        await broker.submit(job)
    final = await broker.events.terminal(flood.id, within=60)
    assert final.state is JobState.FAILED
    assert final.error is not None
    assert final.error.startswith("output too large: the job's volumes")
    assert "50.0 MiB volume limit" in final.error
    single = await broker.events.terminal(big_file.id, within=60)
    assert single.state is JobState.FAILED
    assert single.error is not None
    assert "SIGXFSZ: a file reached the 50.0 MiB file size limit" in single.error
    assert (await broker.events.terminal(after.id, within=30)).state is JobState.COMPLETED


async def test_runners_measure_their_volumes(runner: ContainerRunner, test_label: str) -> None:
    """Contract: both runners report what a container's anonymous volumes hold."""
    container = await runner.create(
        ContainerSpec(
            image=BASE_IMAGE,
            entrypoint=["sh", "-c"],
            command=["cp /code/in /outputs/out"],
            labels={"shoal.test": test_label},
            volumes=("/code", "/outputs"),
            file_size_limit=MiB,
        )
    )
    await runner.put_archive(container, "/code", tar_of({"in": b"z" * 100_000}))
    await runner.start(container)
    assert (await runner.wait(container)).exit_code == 0
    used = await runner.volume_usage(container, 10 * MiB)
    assert used is not None
    assert 200_000 <= used < MiB
