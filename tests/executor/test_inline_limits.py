"""Inline archives are counted while they are unpacked: a decompression bomb costs nothing."""

from __future__ import annotations

import base64
import io
import tarfile
import tracemalloc

import pytest

from shoal.executor.engines.docker.inputs import place_inline
from shoal.executor.failures import JobError
from shoal.inline import inline_source
from shoal.model import InputSource
from tests.bombs import zeros_bomb

from .support import targz

MiB = 1024**2
LIMIT = 256 * MiB


def inline(kind: str, data: str, target: str = "/inputs/in") -> InputSource:
    return InputSource.model_validate({"source": inline_source(kind, data), "target": target})


def test_the_bomb_is_a_valid_archive() -> None:
    data = zeros_bomb({"a": 3 * MiB + 7})
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(data)), mode="r:gz") as tar:
        handle = tar.extractfile("a")
        assert handle is not None
        assert handle.read() == bytes(3 * MiB + 7)


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_two_gib_gzip_bomb_is_refused_in_little_memory(kind: str) -> None:
    bomb = zeros_bomb({"zeros": 2 * 1024 * MiB})
    assert len(bomb) < 4 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(JobError, match="larger than the limit of 256.0 MiB"):
            place_inline(inline(kind, bomb), 1000, LIMIT, "inline input in")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB


def test_many_members_over_the_limit_are_refused_before_they_are_read() -> None:
    small_limit = 64 * MiB
    bomb = zeros_bomb({f"part{i}": 30 * MiB for i in range(5)})
    tracemalloc.start()
    try:
        with pytest.raises(JobError, match="larger than the limit of 64.0 MiB"):
            place_inline(inline("dir", bomb), 1000, small_limit, "inline input in")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < small_limit + 16 * MiB


def test_an_archive_within_the_limit_is_placed() -> None:
    placement = place_inline(
        inline("dir", targz({"a.txt": b"hello", "sub/b.txt": b"x" * 1000})), 1000, LIMIT, "in"
    )
    with tarfile.open(fileobj=io.BytesIO(placement.tar)) as tar:
        names = {m.name: m for m in tar.getmembers()}
        handle = tar.extractfile("in/sub/b.txt")
        assert handle is not None
        assert handle.read() == b"x" * 1000
    assert names["in/a.txt"].uid == 1000


def test_a_file_input_holds_one_file() -> None:
    with pytest.raises(JobError, match="a file input holds 2 files"):
        place_inline(inline("file", targz({"a": b"1", "b": b"2"})), 0, LIMIT, "in")
    with pytest.raises(JobError, match="cannot read its archive"):
        place_inline(inline("file", base64.b64encode(b"not gzip").decode()), 0, LIMIT, "in")
