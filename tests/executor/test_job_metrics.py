"""The executor's job metrics and dependency-cache lookups, on the in-memory twins (fast tier)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import REGISTRY

from shoal.executor.engines.docker.depcache import (
    VOLUME_PREFIX,
    DepCache,
    InstallRequest,
    Prebuilt,
    tar_of,
)
from shoal.executor.engines.docker.depplan import env_key, env_plan
from shoal.executor.engines.docker.gateway import MemoryGateway
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ImageInfo
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl
from shoal.executor.limits import Limits
from shoal.executor.service import Executor
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.model import Job, JobState
from shoal.wire import ComputeRequest, encode

from .support import BASE_IMAGE, PYTHON_IMAGE, Delivery, docker_job, docker_node


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def executor() -> AsyncIterator[Executor]:
    settings = ExecutorSettings(
        node_id="unit", slots=2, pull_policy=PullPolicy.NEVER, allowed_images=[BASE_IMAGE]
    )
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    node = docker_node(settings, runner, MemoryEventSink(), MemoryGateway(), "exec-unit")
    executor = Executor(node)
    yield executor
    await executor.cancel_all()


async def run(executor: Executor, job: Job) -> None:
    delivery = Delivery(encode(ComputeRequest(job=job)))
    await executor.on_compute(cast(AbstractIncomingMessage, delivery))
    await asyncio.wait_for(delivery.done.wait(), 10)
    assert delivery.settled == ["ack"]


@pytest.mark.parametrize(
    ("meta", "label"),
    [
        ({"shoal.job_type": "python"}, "python"),
        ({"shoal.job_type": "DuckDB"}, "duckdb"),
        ({}, "docker"),
        ({"shoal.job_type": f"made-up-{uuid.uuid4().hex[:8]}"}, "docker"),
    ],
)
async def test_the_job_type_label_is_a_translated_job_type_or_the_engine(
    executor: Executor, meta: dict[str, str], label: str
) -> None:
    """A submitter's ``job-type`` label (or a ``shoal.job_type`` meta it wrote on a job
    submitted as is) never becomes a label value."""
    job = docker_job("echo hi").model_copy(
        update={"meta": meta, "labels": {"job-type": f"label-{uuid.uuid4().hex[:8]}"}}
    )
    names = ("shoal_jobs_started_total", "shoal_job_duration_seconds_count")
    before = [sample(name, job_type=label) for name in names]
    finished = sample("shoal_jobs_finished_total", job_type=label, state=str(JobState.COMPLETED))
    await run(executor, job)
    assert [sample(name, job_type=label) for name in names] == [n + 1 for n in before]
    assert sample("shoal_jobs_finished_total", job_type=label, state=str(JobState.COMPLETED)) == (
        finished + 1
    )
    for written in {job.labels["job-type"], meta.get("shoal.job_type", "").lower()} - {label}:
        assert sample("shoal_jobs_started_total", job_type=written) == 0.0


async def test_environment_lookups_count_hits_and_busy_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A complete environment on the node is a hit, and one this executor found before is a
    hit without asking the engine; one still being built elsewhere is ``busy``."""
    info = ImageInfo(user="1000", id=f"sha256:{uuid.uuid4().hex}")
    runner = MemoryRunner(images={PYTHON_IMAGE: info})
    cache = DepCache(runner, ExecutorSettings(node_id="unit"), "exec-unit")
    files = {"requirements.txt": b"tinydep\n"}
    plan = env_plan(files)
    assert plan is not None
    volume = VOLUME_PREFIX + env_key(plan, info.id, {})[:48]
    request = InstallRequest(
        job_id=docker_job("true").id,
        image=PYTHON_IMAGE,
        info=info,
        code_tars=[tar_of(files)],
        argv=[],
        env={},
        network="none",
        network_env={},
        limits=Limits(memory=256 * 1024**2, cpu=1.0, execution_timeout=60),
        gate=JobControl(),
    )
    complete = True

    async def has_marker(*_: object) -> bool:
        return complete

    monkeypatch.setattr(cache, "_has_marker", has_marker)
    await runner.create_volume(volume, {})
    hits = sample("shoal_depcache_lookups_total", result="hit")
    busy = sample("shoal_depcache_lookups_total", result="busy")
    assert await cache.environment(request) == Prebuilt(volume)
    complete = False  # found once: not asked again
    assert await cache.environment(request) == Prebuilt(volume)
    assert sample("shoal_depcache_lookups_total", result="hit") == hits + 2
    pip = {"PIP_INDEX_URL": "http://index.example/"}
    await runner.create_volume(VOLUME_PREFIX + env_key(plan, info.id, pip)[:48], {})
    assert await cache.environment(replace(request, env=pip)) is None
    assert sample("shoal_depcache_lookups_total", result="busy") == busy + 1
