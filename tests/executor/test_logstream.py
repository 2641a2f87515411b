"""The log splitter: a container's bytes become ``log`` events that add up to them exactly."""

from __future__ import annotations

import pytest

from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ContainerSpec, ImageInfo
from shoal.executor.events import JobEvents, MemoryEventSink
from shoal.executor.logstream import LogPump
from shoal.executor.settings import ExecutorSettings

from .support import BASE_IMAGE, tar_of

pytestmark = pytest.mark.timeout(30)


async def pumped(script: str, files: dict[str, bytes], **settings: object) -> dict[str, str]:
    """Each stream's text as the ``log`` events of ``sh -c script`` carry it."""
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    spec = ContainerSpec(
        image=BASE_IMAGE, entrypoint=["sh", "-c"], command=[script], volumes=("/code",)
    )
    container = await runner.create(spec)
    await runner.put_archive(container, "/code", tar_of(files))
    sink = MemoryEventSink()
    options = {"node_id": "unit", "log_flush_seconds": 0.05, **settings}
    pump = LogPump(JobEvents(sink, "j-1", "unit"), ExecutorSettings(**options))  # type: ignore[arg-type]
    await runner.start(container)
    await pump.run(runner.logs(container))
    await runner.close()
    text: dict[str, str] = {"stdout": "", "stderr": ""}
    for event in sink.events:
        assert event.kind == "log"
        assert event.stream is not None
        text[event.stream] += event.data
    return text


async def test_unterminated_output_is_sent_whole() -> None:
    data = b"0123456789" * 1000
    assert await pumped("cat /code/out", {"out": data}) == {"stdout": data.decode(), "stderr": ""}


async def test_chunks_cut_inside_a_character_and_streams_interleaved_add_up() -> None:
    first = "x" + "é" * 300  # chunks of 256 bytes end inside a two-byte character
    tail = "last line, no newline: é"
    files = {"a": first.encode(), "b": tail.encode()}
    text = await pumped("cat /code/a; echo between >&2; cat /code/b", files, log_chunk_bytes=256)
    assert text == {"stdout": first + tail, "stderr": "between\n"}


async def test_a_cut_character_left_by_a_stream_switch_is_not_lost() -> None:
    text = await pumped("cat /code/a; echo end >&2", {"a": "ok é".encode()[:-1]})
    assert text == {"stdout": "ok \ufffd", "stderr": "end\n"}
