"""Reaping at start and while running: only containers (and proxy rules) of executors that are
gone."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import aio_pika
import aiodocker
import pytest

from shoal.executor.engines.docker.engine import DockerEngine
from shoal.executor.engines.docker.gateway import MemoryGateway
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.network import ACCEPT_PREFIX, iptables, remove_proxy_rules
from shoal.executor.engines.docker.orphans import reap_orphans
from shoal.executor.engines.docker.runner import (
    LABEL_EXECUTOR,
    LABEL_NODE,
    ContainerSpec,
    ImageInfo,
)
from shoal.executor.reaping import Confirmed, keep_reaping, reap_round
from shoal.executor.settings import ExecutorSettings
from shoal.liveness import Alive, executor_alive
from shoal.model import JobState

from .conftest import Broker, StartExecutor
from .support import BASE_IMAGE, docker_job


async def test_reaps_only_containers_of_gone_executors() -> None:
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    owners = {"live": "n-1-aaaaaa", "gone": "n-2-bbbbbb", "unlabelled": ""}
    ids: dict[str, str] = {}
    for name, owner in owners.items():
        labels = {LABEL_NODE: "n"} | ({LABEL_EXECUTOR: owner} if owner else {})
        ids[name] = await runner.create(ContainerSpec(image=BASE_IMAGE, labels=labels))
    second = await runner.create(
        ContainerSpec(image=BASE_IMAGE, labels={LABEL_NODE: "n", LABEL_EXECUTOR: owners["gone"]})
    )
    other_node = await runner.create(
        ContainerSpec(image=BASE_IMAGE, labels={LABEL_NODE: "m", LABEL_EXECUTOR: "m-1-cccccc"})
    )
    asked: list[str] = []

    async def alive(executor_id: str) -> bool:
        asked.append(executor_id)
        return executor_id == owners["live"]

    assert await reap_orphans(runner, "n", alive) == 3
    assert set(runner.containers) == {ids["live"], other_node}
    assert sorted(runner.removed) == sorted([ids["gone"], ids["unlabelled"], second])
    assert sorted(asked) == sorted([owners["live"], owners["gone"]])


async def test_the_docker_engine_reaps_at_its_clean_up() -> None:
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    gone = {LABEL_NODE: "n", LABEL_EXECUTOR: "n-2-bbbbbb"}
    await runner.create(ContainerSpec(image=BASE_IMAGE, labels=gone))
    engine = DockerEngine(ExecutorSettings(node_id="n"), runner, MemoryGateway(), "n-1-aaaaaa")

    async def alive(executor_id: str) -> bool:
        return False

    await engine.clean_up(alive)
    assert runner.containers == {}


@pytest.mark.docker
async def test_only_the_proxy_rules_of_gone_executors_are_removed() -> None:
    node = f"rules-{uuid.uuid4().hex[:8]}"
    owners = {"live": f"{node}-1-aaaaaa", "gone": f"{node}-2-bbbbbb", "unnamed": ""}
    for port, owner in enumerate(owners.values(), start=1):
        comment = f"{ACCEPT_PREFIX}{node} {owner}".rstrip()
        rule = ["-i", "shoal-none0", "-p", "tcp", "--dport", str(port)]
        code, output = await iptables(
            "-A", "INPUT", *rule, "-m", "comment", "--comment", comment, "-j", "ACCEPT"
        )
        assert code == 0, output

    async def alive(executor_id: str) -> bool:
        return executor_id == owners["live"]

    try:
        stale = await remove_proxy_rules(node, alive)
        assert sorted(rule.split("--dport ")[1].split()[0] for rule in stale) == ["2", "3"]
    finally:
        rest = await remove_proxy_rules(node)
    assert [owners["live"] in rule for rule in rest] == [True]
    code, rules = await iptables("-S", "INPUT")
    assert code == 0
    assert f"{ACCEPT_PREFIX}{node}" not in rules


@pytest.mark.rabbitmq
async def test_liveness_is_the_executor_connection(
    broker: Broker, start_executor: StartExecutor, broker_url: str
) -> None:
    running = await start_executor()
    connection = await aio_pika.connect(broker_url)
    try:
        assert await executor_alive(connection, running.executor.node.executor_id)
        assert not await executor_alive(connection, "nobody-1-000000")
        await running.stop()
        assert not await executor_alive(connection, running.executor.node.executor_id)
    finally:
        await connection.close()


@pytest.mark.docker
@pytest.mark.rabbitmq
@pytest.mark.timeout(90)
async def test_executors_sharing_a_node_id_leave_each_other_alone(
    broker: Broker, start_executor: StartExecutor
) -> None:
    node = f"shared-{uuid.uuid4().hex[:8]}"
    first = await start_executor(node_id=node)
    first_id = first.executor.node.executor_id
    job = docker_job("echo started; sleep 30")
    await broker.submit(job)
    await broker.events.wait(job.id, lambda e: e.kind == "log", 30)

    await start_executor(node_id=node)

    docker = aiodocker.Docker()
    try:
        found = await docker.containers.list(filters={"label": [f"shoal.job_id={job.id}"]})
    finally:
        await docker.close()
    assert len(found) == 1, "the second executor removed the first one's running container"
    code, rules = await iptables("-S", "INPUT")
    assert code == 0
    assert f"shoal-proxy:{node} {first_id}" in rules
    await broker.stop(job.id)
    final = await broker.events.terminal(job.id)
    assert final.state is JobState.STOPPED
    assert final.error is not None
    assert final.error.startswith("stopped: stopped by user (ended by ")
    assert final.executor == first_id


async def test_a_running_executor_reaps_only_executors_gone_at_two_rounds() -> None:
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    me, other, blip = "n-1-aaaaaa", "n-2-bbbbbb", "n-3-cccccc"
    made = {}
    for owner in (me, other, blip):
        labels = {LABEL_NODE: "n", LABEL_EXECUTOR: owner}
        made[owner] = await runner.create(ContainerSpec(image=BASE_IMAGE, labels=labels))
    engine = DockerEngine(ExecutorSettings(node_id="n"), runner, MemoryGateway(), me)
    gone = {me, other, blip}  # the broker even says this executor is gone: it is kept

    async def alive(executor_id: str) -> bool:
        return executor_id not in gone

    confirmed = Confirmed(alive, me)
    await reap_round([engine], confirmed, 5)
    assert set(runner.containers) == set(made.values()), "reaped at the first sighting"
    confirmed.next_round()
    gone.discard(blip)  # its connection came back
    await reap_round([engine], confirmed, 5)
    assert set(runner.containers) == {made[me], made[blip]}


async def test_a_reaping_round_is_bounded_and_survives_errors() -> None:
    cleaned: list[str] = []

    class Wedged:
        name = "wedged"

        async def clean_up(self, alive: Alive) -> None:
            await asyncio.sleep(60)

    class Broken:
        name = "broken"

        async def clean_up(self, alive: Alive) -> None:
            raise RuntimeError("engine down")

    class Fine:
        name = "fine"

        async def clean_up(self, alive: Alive) -> None:
            cleaned.append("fine")

    async def alive(executor_id: str) -> bool:
        return True

    async with asyncio.timeout(5):
        await reap_round([Wedged(), Broken(), Fine()], alive, 0.2)
    assert cleaned == ["fine"]


async def test_keep_reaping_reaps_every_period() -> None:
    rounds = asyncio.Event()

    class Counted:
        name = "counted"
        count = 0

        async def clean_up(self, alive: Alive) -> None:
            self.count += 1
            if self.count == 3:
                rounds.set()

    async def alive(executor_id: str) -> bool:
        return True

    counted = Counted()
    task = asyncio.create_task(keep_reaping([counted], alive, "me", 0.05, 1))
    try:
        await asyncio.wait_for(rounds.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
