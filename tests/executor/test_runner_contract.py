"""The ``ContainerRunner`` contract: the same tests on the in-memory twin and on Docker."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from datetime import UTC, datetime

import pytest

from shoal.executor.engine import Stream
from shoal.executor.engines.docker.docker_runner import DockerRunner
from shoal.executor.engines.docker.runner import ContainerRunner, ContainerSpec, RunnerError
from shoal.executor.failures import IMAGE_MISSING, JobError
from shoal.executor.settings import PullPolicy

from .support import BASE_IMAGE, tar_of

pytestmark = pytest.mark.timeout(60)


def spec(script: str, label: str, **extra: object) -> ContainerSpec:
    values: dict[str, object] = {
        "image": BASE_IMAGE,
        "entrypoint": ["sh", "-c"],
        "command": [script],
        "labels": {"shoal.test": label},
        "volumes": ("/code", "/outputs"),
        "tmpfs": {"/tmp": "rw,size=16m"},
        **extra,
    }
    return ContainerSpec(**values)  # type: ignore[arg-type]


async def run(runner: ContainerRunner, container: str) -> tuple[list[tuple[Stream, bytes]], int]:
    await runner.start(container)
    chunks = [chunk async for chunk in runner.logs(container)]
    info = await asyncio.wait_for(runner.wait(container), 20)
    return chunks, info.exit_code


def joined(chunks: list[tuple[Stream, bytes]], stream: Stream) -> bytes:
    return b"".join(data for s, data in chunks if s == stream)


async def test_logs_in_order_and_exit_code(runner: ContainerRunner, test_label: str) -> None:
    script = "echo one; echo two >&2; sleep 0.3; echo three; exit 3"
    container = await runner.create(spec(script, test_label))
    chunks, code = await run(runner, container)
    assert code == 3
    assert joined(chunks, "stdout") == b"one\nthree\n"
    assert joined(chunks, "stderr") == b"two\n"
    streams = [s for s, _ in chunks]
    assert streams.index("stderr") < len(streams) - 1 - streams[::-1].index("stdout")


async def test_files_in_and_out(runner: ContainerRunner, test_label: str) -> None:
    container = await runner.create(
        spec("cat /code/in.txt; cp /code/in.txt /outputs/out.txt", test_label)
    )
    await runner.put_archive(container, "/code", tar_of({"in.txt": b"hello\n"}))
    chunks, code = await run(runner, container)
    assert code == 0
    assert joined(chunks, "stdout") == b"hello\n"
    raw = await runner.get_archive(container, "/outputs", 1024 * 1024)
    assert raw is not None
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        handle = archive.extractfile("outputs/out.txt")
        assert handle is not None
        assert handle.read() == b"hello\n"


async def test_output_over_limit_is_none(runner: ContainerRunner, test_label: str) -> None:
    container = await runner.create(spec("true", test_label))
    await runner.put_archive(container, "/outputs", tar_of({"big": b"x" * 300_000}))
    await run(runner, container)
    assert await runner.get_archive(container, "/outputs", 100_000) is None


async def test_root_is_read_only(runner: ContainerRunner, test_label: str) -> None:
    container = await runner.create(spec("set -e; echo x > /etc/x; echo unreachable", test_label))
    with pytest.raises(RunnerError):
        await runner.put_archive(container, "/etc", tar_of({"x": b"x"}))
    chunks, code = await run(runner, container)
    assert code != 0
    assert b"unreachable" not in joined(chunks, "stdout")


async def test_kill_ends_logs_and_wait(runner: ContainerRunner, test_label: str) -> None:
    container = await runner.create(spec("echo started; sleep 30", test_label))
    await runner.start(container)
    logs = runner.logs(container)
    first = await asyncio.wait_for(anext(logs), 10)
    assert first == ("stdout", b"started\n")
    await runner.kill(container)
    rest = await asyncio.wait_for(_drain(logs), 10)
    assert rest == []
    info = await asyncio.wait_for(runner.wait(container), 10)
    assert info.exit_code == 137
    await runner.kill(container)  # killing an exited container is not an error


async def _drain(logs: object) -> list[tuple[Stream, bytes]]:
    return [chunk async for chunk in logs]  # type: ignore[attr-defined]


async def test_logs_of_exited_container_end(runner: ContainerRunner, test_label: str) -> None:
    container = await runner.create(spec("echo done", test_label))
    await runner.start(container)
    await asyncio.wait_for(runner.wait(container), 10)
    chunks = await asyncio.wait_for(_drain(runner.logs(container)), 5)
    assert joined(chunks, "stdout") == b"done\n"


async def test_labels_and_remove(runner: ContainerRunner, test_label: str) -> None:
    container = await runner.create(spec("sleep 30", test_label))
    await runner.start(container)
    found = await runner.list_labelled({"shoal.test": test_label})
    assert list(found) == [container]
    assert found[container]["shoal.test"] == test_label
    await runner.remove(container)
    await runner.remove(container)  # idempotent
    assert await runner.list_labelled({"shoal.test": test_label}) == {}


@pytest.mark.parametrize("policy", list(PullPolicy))
async def test_missing_image(runner: ContainerRunner, policy: PullPolicy) -> None:
    with pytest.raises(JobError) as caught:
        await runner.image("shoal/no-such-image:0", policy)
    assert caught.value.category == IMAGE_MISSING


async def test_image_info(runner: ContainerRunner) -> None:
    info = await runner.image(BASE_IMAGE, PullPolicy.NEVER)
    assert info.user == ""


async def test_named_volumes(runner: ContainerRunner, test_label: str) -> None:
    name = f"shoal-{test_label}"
    assert await runner.volume(name) is None
    await runner.create_volume(name, {"shoal.test": test_label})
    try:
        await runner.create_volume(name, {"shoal.test": "again"})  # nothing happens
        info = await runner.volume(name)
        assert info is not None
        assert info.labels == {"shoal.test": test_label}
        assert (datetime.now(UTC) - info.created).total_seconds() < 60
    finally:
        await runner.remove_volume(name)
    await runner.remove_volume(name)  # idempotent
    assert await runner.volume(name) is None


async def test_unterminated_output_arrives_whole(runner: ContainerRunner, test_label: str) -> None:
    container = await runner.create(spec("echo first; sleep 0.5; cat /code/digits", test_label))
    await runner.put_archive(container, "/code", tar_of({"digits": b"0" * 9999 + b"7"}))
    chunks, code = await run(runner, container)
    assert code == 0
    assert joined(chunks, "stdout") == b"first\n" + b"0" * 9999 + b"7"


async def test_sigterm_runs_the_jobs_trap(runner: ContainerRunner, test_label: str) -> None:
    script = "trap 'echo bye > /outputs/bye.txt; exit 0' TERM; echo started; sleep 30 & wait"
    container = await runner.create(spec(script, test_label))
    await runner.start(container)
    first = await asyncio.wait_for(anext(runner.logs(container)), 10)
    assert first == ("stdout", b"started\n")
    await runner.kill(container, "SIGTERM")
    info = await asyncio.wait_for(runner.wait(container), 10)
    assert info.exit_code == 0
    raw = await runner.get_archive(container, "/outputs", 1024 * 1024)
    assert raw is not None
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        handle = archive.extractfile("outputs/bye.txt")
        assert handle is not None
        assert handle.read() == b"bye\n"


async def test_sigterm_without_a_trap_ends_with_143(
    runner: ContainerRunner, test_label: str
) -> None:
    container = await runner.create(spec("echo started; sleep 30 & wait", test_label))
    await runner.start(container)
    await asyncio.wait_for(anext(runner.logs(container)), 10)
    await runner.kill(container, "SIGTERM")
    info = await asyncio.wait_for(runner.wait(container), 10)
    assert info.exit_code == 143
    killed_from_outside = runner.stopped_by_engine(container, time.time() - 60, 0.5)
    assert not await asyncio.wait_for(killed_from_outside, 10), "the engine is still here"


@pytest.mark.docker
async def test_a_job_that_kills_itself_shows_its_signal(test_label: str) -> None:
    """The job runs under an init: a signal it sends itself is not ignored as PID 1's."""
    runner = DockerRunner.connect()
    try:
        container = await runner.create(spec("kill -SEGV $$; echo survived", test_label))
        chunks, code = await run(runner, container)
        assert code == 139
        assert b"survived" not in joined(chunks, "stdout")
        no_kill = runner.stopped_by_engine(container, time.time() - 60, 60)
        assert not await asyncio.wait_for(no_kill, 5), "the engine killed nothing: not asked"
    finally:
        for container in await runner.list_labelled({"shoal.test": test_label}):
            await runner.remove(container)
        await runner.close()
