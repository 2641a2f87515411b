"""Blob inputs on the executor: fetched once by hash, cached on disk within a bound, placed
as the inline archive they stand for; a blob nobody holds fails the job, saying which."""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile
from pathlib import Path

import pytest

from shoal.blobs import blob_source, digest
from shoal.executor.blobs import BlobCache, materialise
from shoal.executor.engines.docker.inputs import place_inline
from shoal.executor.failures import INPUT_FAILED, JobError
from shoal.model import InputSource


class Held:
    """An in-memory requester's blobs, counting fetches."""

    def __init__(self, *blobs: bytes) -> None:
        self.blobs = {digest(blob): blob for blob in blobs}
        self.calls: list[str] = []

    async def __call__(self, sha256: str) -> bytes | None:
        self.calls.append(sha256)
        await asyncio.sleep(0)  # let concurrent gets meet the fetch in flight
        return self.blobs.get(sha256)


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cached(root: Path) -> dict[str, int]:
    """File name → size of what the cache folder holds."""
    return {path.name: path.stat().st_size for path in root.iterdir()}


def blob_input(data: bytes, target: str = "/code") -> InputSource:
    source = blob_source("dir", digest(data), len(data))
    return InputSource.model_validate({"source": source, "target": target, "alias": "code"})


async def test_concurrent_jobs_fetch_a_blob_once_and_later_ones_read_the_disk(
    tmp_path: Path,
) -> None:
    code = archive({"app.py": b"print(1)\n"})
    held = Held(code)
    cache = BlobCache(tmp_path, 1 << 20, held)
    got = await asyncio.gather(*(cache.get(digest(code)) for _ in range(8)))
    assert got == [code] * 8
    assert held.calls == [digest(code)]
    again = BlobCache(tmp_path, 1 << 20, held)  # another executor of the node
    assert await again.get(digest(code)) == code
    assert held.calls == [digest(code)]
    assert (tmp_path / digest(code)).read_bytes() == code


async def test_a_blob_input_is_placed_as_the_inline_archive_it_names(tmp_path: Path) -> None:
    code = archive({"app.py": b"print(1)\n", "lib/util.py": b"X = 2\n"})
    cache = BlobCache(tmp_path, 1 << 20, Held(code))
    url = InputSource.model_validate(
        {"source": {"type": "url", "params": {"url": "https://example.com/a"}}, "target": "/a/b"}
    )
    inputs = await materialise([blob_input(code), url], cache)
    assert inputs[1] == url
    assert inputs[0].source.type == "inline"
    assert base64.b64decode(inputs[0].source.params["data"]) == code
    placement = place_inline(inputs[0], 1000, 1 << 20, "code")
    with tarfile.open(fileobj=io.BytesIO(placement.tar)) as tar:
        assert {"app.py", "lib/util.py"} <= set(tar.getnames())


async def test_a_blob_nobody_holds_fails_the_job_naming_it(tmp_path: Path) -> None:
    lost = archive({"app.py": b"gone\n"})
    with pytest.raises(JobError) as caught:
        await materialise([blob_input(lost)], BlobCache(tmp_path, 1 << 20, Held()))
    assert caught.value.error == (
        f"{INPUT_FAILED}: blob sha256:{digest(lost)} is not held by the requester "
        "(removed, or never uploaded); submit the job again"
    )


async def test_the_cache_keeps_the_most_recently_used_within_its_bound(tmp_path: Path) -> None:
    blobs = [bytes([n]) * 1000 for n in range(4)]
    held = Held(*blobs)
    cache = BlobCache(tmp_path, 2500, held)
    for blob in blobs:
        await cache.get(digest(blob))
    kept = cached(tmp_path)
    assert sorted(kept) == sorted(digest(b) for b in blobs[2:])
    assert sum(kept.values()) <= 2500


async def test_a_damaged_cache_file_is_fetched_again(tmp_path: Path) -> None:
    code = archive({"app.py": b"print(1)\n"})
    held = Held(code)
    (tmp_path / digest(code)).write_bytes(b"not the blob")
    assert await BlobCache(tmp_path, 1 << 20, held).get(digest(code)) == code
    assert held.calls == [digest(code)]


async def test_bytes_that_do_not_match_the_hash_fail_the_job(tmp_path: Path) -> None:
    code = archive({"app.py": b"print(1)\n"})

    async def liar(sha256: str) -> bytes:
        return b"something else"

    with pytest.raises(JobError, match="do not match the hash"):
        await BlobCache(tmp_path, 1 << 20, liar).get(digest(code))
    assert cached(tmp_path) == {}
