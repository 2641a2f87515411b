"""``BlobStore`` contract: the same tests on every adapter (the database on SQLite and
Postgres); an object-store adapter must pass them too."""

from __future__ import annotations

import asyncio

import pytest

from shoal.blobs import digest
from shoal.requester.store import BlobStore, JobStore


@pytest.fixture
def blobs(store: JobStore) -> BlobStore:
    return store.blobs()


async def test_a_blob_put_is_held_by_its_sha256(blobs: BlobStore) -> None:
    data = b"print('hello')\n" * 100
    sha256 = await blobs.put(data)
    assert sha256 == digest(data)
    assert await blobs.get(sha256) == data
    assert await blobs.sizes([sha256]) == {sha256: len(data)}
    assert await blobs.count() == 1


async def test_missing_names_each_hash_not_held_once_in_order(blobs: BlobStore) -> None:
    held = await blobs.put(b"held")
    absent = [digest(b"one"), digest(b"two")]
    asked = [absent[1], held, absent[0], absent[1]]
    assert await blobs.missing(asked) == [absent[1], absent[0]]
    assert await blobs.missing([]) == []
    assert await blobs.sizes([*absent]) == {}


async def test_a_blob_not_held_reads_as_none(blobs: BlobStore) -> None:
    assert await blobs.get(digest(b"never stored")) is None


async def test_putting_a_blob_again_stores_it_once(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    results = await asyncio.gather(*(blobs.put(data) for _ in range(5)))
    assert set(results) == {digest(data)}
    assert await blobs.count() == 1
    assert await blobs.get(digest(data)) == data


async def test_an_empty_blob_is_a_blob(blobs: BlobStore) -> None:
    sha256 = await blobs.put(b"")
    assert await blobs.get(sha256) == b""
    assert await blobs.missing([sha256]) == []
