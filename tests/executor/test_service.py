"""The executor service on real RabbitMQ and Docker: jobs, inputs, limits, stop, timeouts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiodocker
import pytest

from shoal.images import LAUNCHER_PATH
from shoal.model import JobState
from shoal.topology import COMPUTE_QUEUE
from shoal.wire import JobEvent, utcnow

from .conftest import Broker, StartExecutor
from .support import BASE_IMAGE, PYTHON_IMAGE, docker_job, inline_input, untar

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq, pytest.mark.timeout(90)]


def logs(events: list[JobEvent], stream: str) -> str:
    return "".join(
        e.data
        for e in sorted(events, key=lambda e: e.seq)
        if e.kind == "log" and e.stream == stream
    )


async def test_job_runs_with_events_in_order(broker: Broker, start_executor: StartExecutor) -> None:
    running = await start_executor()
    job = docker_job("echo out; echo err >&2; echo 42 > /outputs/answer.txt")
    failing = docker_job("echo bye; exit 7")
    await broker.submit(job)
    await broker.submit(failing)
    final = await broker.events.terminal(job.id)
    assert final.state is JobState.COMPLETED
    assert final.exit_code == 0
    assert final.executor == running.executor.node.executor_id
    events = broker.events.of(job.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].state is JobState.RUNNING
    assert events[0].started_at is not None
    assert [e.kind for e in events[-2:]] == ["result", "state"]
    assert logs(events, "stdout") == "out\n"
    assert logs(events, "stderr") == "err\n"
    assert untar(events[-2].outputs["outputs"]) == {"answer.txt": b"42\n"}
    other = await broker.events.terminal(failing.id)
    assert other.state is JobState.FAILED
    assert other.exit_code == 7
    assert other.error == "exit code: the command exited with code 7"


async def test_each_input_kind(
    broker: Broker, start_executor: StartExecutor, host_http_server: int, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "local.txt").write_text("local\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    await start_executor(allowed_local_dirs=[allowed], allowed_ports=[host_http_server])
    job = docker_job(
        "cat /code/app.txt /data/sub/b.txt /inputs/web.txt /inputs/local/local.txt",
        inputs=[
            inline_input("file", {"app.txt": b"inline file\n"}, "/code/app.txt"),
            inline_input("dir", {"sub/b.txt": b"inline dir\n"}, "/data"),
            {
                "source": {
                    "type": "url",
                    "params": {"url": f"http://127.0.0.1:{host_http_server}/x"},
                },
                "target": "/inputs/web.txt",
            },
            {
                "source": {"type": "local", "params": {"path": str(allowed)}},
                "target": "/inputs/local",
            },
        ],
    )
    refused = docker_job(
        "true",
        inputs=[
            {
                "source": {"type": "local", "params": {"path": str(tmp_path / "secret.txt")}},
                "target": "/inputs/s.txt",
            }
        ],
    )
    await broker.submit(job)
    await broker.submit(refused)
    final = await broker.events.terminal(job.id)
    assert final.state is JobState.COMPLETED, final.error
    assert logs(broker.events.of(job.id), "stdout") == (
        "inline file\ninline dir\nhello from the host\nlocal\n"
    )
    failed = await broker.events.terminal(refused.id)
    assert failed.state is JobState.FAILED
    assert failed.error is not None
    assert failed.error.startswith("input failed: local input")


async def test_timeout_and_oom(broker: Broker, start_executor: StartExecutor) -> None:
    await start_executor()
    slow = docker_job("echo started; sleep 30", timeouts={"execution": 1})
    hog = docker_job(
        "",
        argv=["python3", "-c", "x = bytearray(400 * 1024 * 1024); print(len(x))"],
        resources={"memory": "64Mi"},
    )
    await broker.submit(slow)
    await broker.submit(hog)
    final = await broker.events.terminal(slow.id)
    assert final.state is JobState.FAILED
    assert final.exit_code == 143
    assert final.error == "timeout: execution exceeded 1s (ended by SIGTERM)"
    assert logs(broker.events.of(slow.id), "stdout") == "started\n"
    oom = await broker.events.terminal(hog.id)
    assert oom.state is JobState.FAILED
    assert oom.error is not None
    assert oom.error.startswith("oom-killed: "), oom.error


async def test_stop_running_and_queued(broker: Broker, start_executor: StartExecutor) -> None:
    await start_executor()
    queued = docker_job("echo never")
    await broker.stop(queued.id)
    long = docker_job("echo started; sleep 30")
    await broker.submit(long)
    await broker.events.wait(long.id, lambda e: e.kind == "log", 30)
    await broker.stop(long.id)
    final = await broker.events.terminal(long.id, within=15)
    assert final.state is JobState.STOPPED
    assert final.error == "stopped: stopped by user (ended by SIGTERM)"
    await broker.submit(queued)
    skipped = await broker.events.terminal(queued.id)
    assert skipped.state is JobState.STOPPED
    assert [e.kind for e in broker.events.of(queued.id)] == ["state"]


async def test_a_job_that_kills_itself_with_sigsegv_fails(
    broker: Broker, start_executor: StartExecutor
) -> None:
    await start_executor()
    job = docker_job(
        "", argv=["python3", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    )
    await broker.submit(job)
    final = await broker.events.terminal(job.id)
    assert final.state is JobState.FAILED
    assert final.exit_code == 139
    assert final.error == "exit code: ended by SIGSEGV"


async def test_queue_timeout_and_undecodable(broker: Broker, start_executor: StartExecutor) -> None:
    dead = await broker.channel.declare_queue(exclusive=True, auto_delete=True)
    await dead.bind(broker.topology.dead_letter)
    await start_executor()
    marker = f"not json {uuid.uuid4()}".encode()
    await broker.channel.default_exchange.publish(
        aio_pika.Message(marker), routing_key=COMPUTE_QUEUE, mandatory=True
    )
    async with asyncio.timeout(15):
        async with dead.iterator() as messages:
            async for message in messages:
                await message.ack()
                if message.body == marker:
                    break
    late = docker_job("echo never", timeouts={"queue": 5})
    await broker.submit(late, submitted_at=utcnow() - timedelta(seconds=30))
    final = await broker.events.terminal(late.id)
    assert final.state is JobState.FAILED
    assert final.error is not None
    assert final.error.startswith("queue timeout: ")


async def test_hardening_read_back_from_docker(
    broker: Broker, start_executor: StartExecutor
) -> None:
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    running = await start_executor(ca_bundle=ca, pids_limit=100)
    job = docker_job(
        "",
        image=PYTHON_IMAGE,
        argv=["sleep", "30"],
        resources={"memory": "128Mi", "cpu": "500m"},
    )
    await broker.submit(job)
    await broker.events.running(job.id)
    docker = aiodocker.Docker()
    try:
        info: dict[str, Any] = {}
        async with asyncio.timeout(15):
            while not info:
                found = await docker.containers.list(filters={"label": [f"shoal.job_id={job.id}"]})
                info = await found[0].show() if found else {}
        host = info["HostConfig"]
        config = info["Config"]
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 100
        assert host["ReadonlyRootfs"] is True
        assert host["Memory"] == 128 * 1024**2
        assert host["NanoCpus"] == 500_000_000
        assert host["Privileged"] is False
        assert host["NetworkMode"] == "none"
        assert config["User"] == "1000:1000"
        assert config["Labels"]["shoal.job_id"] == job.id
        assert config["Labels"]["shoal.node"] == running.settings.node_id
        assert "SSL_CERT_FILE=/etc/shoal/ca-bundle.crt" in config["Env"]
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/etc/shoal/ca-bundle.crt"]["RW"] is False
        assert "/shoal-env" not in mounts, "no prebuilt environment for a job without deps"
        assert all(
            m["Type"] != "volume" or not m.get("Name", "").startswith("shoal-")
            for m in info["Mounts"]
        ), "no named volume of the node is mounted in a job"
        assert {"/code", "/outputs"} <= set(mounts)
        assert not any("docker.sock" in m["Source"] for m in info["Mounts"])
    finally:
        await docker.close()
    await broker.stop(job.id)
    assert (await broker.events.terminal(job.id)).state is JobState.STOPPED


async def test_python_runtime_job_with_dep_cache(
    broker: Broker, start_executor: StartExecutor
) -> None:
    await start_executor()
    code = b'import os\nprint("hello from", os.getuid(), os.path.exists("/shoal-cache"))\n'
    job = docker_job(
        "",
        image=PYTHON_IMAGE,
        argv=[LAUNCHER_PATH, "--", "python", "app.py"],
        inputs=[inline_input("file", {"app.py": code}, "/code/app.py")],
        network={"type": "http", "domains": ["pypi.org", "files.pythonhosted.org"]},
    )
    await broker.submit(job)
    final = await broker.events.terminal(job.id, within=60)
    assert final.state is JobState.COMPLETED, logs(broker.events.of(job.id), "stderr")
    assert logs(broker.events.of(job.id), "stdout") == "hello from 1000 False\n"


async def test_extra_output_paths_for_a_uid_1000_job(
    broker: Broker, start_executor: StartExecutor
) -> None:
    await start_executor()
    write = "import os; open('/outputs/res/a.txt', 'w').write(str(os.getuid()))"
    nested = docker_job(
        "",
        image=PYTHON_IMAGE,
        argv=["python", "-c", write],
        outputs=[{"name": "outputs", "path": "/outputs"}, {"name": "res", "path": "/outputs/res"}],
    )
    own = docker_job(
        "", image=PYTHON_IMAGE, argv=["true"], outputs=[{"name": "results", "path": "/results"}]
    )
    await broker.submit(nested)
    await broker.submit(own)
    final = await broker.events.terminal(nested.id)
    assert final.state is JobState.COMPLETED, logs(broker.events.of(nested.id), "stderr")
    result = next(e for e in broker.events.of(nested.id) if e.kind == "result")
    assert untar(result.outputs["res"]) == {"a.txt": b"1000"}
    assert untar(result.outputs["outputs"]) == {"res/a.txt": b"1000"}
    refused = await broker.events.terminal(own.id)
    assert refused.state is JobState.FAILED
    assert refused.error == (
        "output not writable: /results would be owned by root but the job runs as 1000; "
        "collect it under /outputs instead, e.g. -o results:/outputs/results"
    )


async def test_duplicate_compute_message_runs_once(
    broker: Broker, start_executor: StartExecutor
) -> None:
    running = await start_executor(slots=2)
    job = docker_job("echo once; sleep 1")
    await broker.submit(job)
    await broker.submit(job)  # the same job ID twice, both delivered at once (prefetch 2)
    final = await broker.events.terminal(job.id)
    assert final.state is JobState.COMPLETED
    after = docker_job("echo after")
    await broker.submit(after)
    assert (await broker.events.terminal(after.id)).state is JobState.COMPLETED
    events = broker.events.of(job.id)
    assert {e.executor for e in events} == {running.executor.node.executor_id}
    assert [e.state for e in events if e.kind == "state"] == [
        JobState.RUNNING,
        JobState.COMPLETED,
    ]
    assert logs(events, "stdout") == "once\n"
    await running.stop()  # a delivery left unsettled would go back to the queue now
    assert await ready_count(broker) == 0


async def ready_count(broker: Broker) -> int:
    """How many messages the compute queue holds (taken off it: a quorum queue's
    ``Declare-Ok`` does not count returned messages)."""
    queue = await broker.channel.declare_queue(COMPUTE_QUEUE, passive=True)
    count = 0
    while await queue.get(no_ack=True, fail=False) is not None:
        count += 1
    return count


async def test_native_job_attacks_refused(broker: Broker, start_executor: StartExecutor) -> None:
    """The attacks: a native docker job named any image (a missing one would be pulled) and ran
    as uid 0, its image's default user."""
    await start_executor(allowed_images=[BASE_IMAGE, "shoal/not-here:*"])
    root = docker_job(
        "id -u; id -g; echo written > /outputs/o.txt; touch /etc/x 2>&1 || true",
        outputs=[{"name": "outputs", "path": "/outputs"}],
    )
    other = docker_job("true", image="alpine:3")
    missing = docker_job("true", image="shoal/not-here:1")
    for job in (root, other, missing):
        await broker.submit(job)

    assert (await broker.events.terminal(root.id)).state is JobState.COMPLETED
    assert logs(broker.events.of(root.id), "stdout").splitlines()[:2] == ["65534", "65534"]
    result = next(e for e in broker.events.of(root.id) if e.kind == "result")
    assert untar(result.outputs["outputs"]) == {"o.txt": b"written\n"}

    refused = await broker.events.terminal(other.id)
    assert refused.error is not None
    assert refused.error.startswith("image not allowed: alpine:3 is not an image this node runs")
    not_pulled = await broker.events.terminal(missing.id)
    assert not_pulled.error == (
        "image missing: shoal/not-here:1 is not on this node and the pull policy is 'never'"
    )
    docker = aiodocker.Docker()
    try:
        for image in ("alpine:3", "shoal/not-here:1"):
            with pytest.raises(aiodocker.DockerError) as absent:
                await docker.images.inspect(image)
            assert absent.value.status == 404, f"{image} was pulled"
    finally:
        await docker.close()
