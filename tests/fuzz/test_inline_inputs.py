"""Inline input archives as the executor places them
(``shoal.executor.engines.docker.inputs.place_inline``).

Whatever the archive in a job message holds, placing it is a ``JobError`` (input failed) or
a placement tar that is safe to unpack at its root: relative names without ``..``, every
member inside the input's target (or one of the folders above it), nothing written through
a link placed before it, and only files, folders and symbolic links. A gzip bomb is refused
without being unpacked into memory.
"""

from __future__ import annotations

import base64
import io
import posixpath
import tarfile
import tracemalloc

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.executor.engines.docker.inputs import Placement, place_inline
from shoal.executor.failures import INPUT_FAILED, JobError
from shoal.inline import inline_source
from shoal.model import InputSource
from tests.fuzz.profiles import fuzz
from tests.fuzz.tarballs import Member, archives, build, gzip_bomb

LIMIT = 1024**2
TARGETS = ["/inputs", "/inputs/data", "/code", "/inputs/a/b.csv"]


def _item(data: bytes, kind: str, target: str) -> InputSource:
    source = inline_source(kind, base64.b64encode(data).decode())
    return InputSource.model_validate({"source": source, "target": target})


def check_placement(placement: Placement, target: str, kind: str) -> None:
    """The placement tar unpacks inside ``target`` and never through a link; a folder input
    never replaces its target folder with anything but a folder."""
    inside = posixpath.relpath(target, placement.root)
    if inside == ".":
        inside = ""
    above = {posixpath.dirname(inside)}
    while (parent := posixpath.dirname(min(above, key=len))) not in above:
        above.add(parent)
    kinds: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(placement.tar)) as tar:
        for member in tar:
            name = member.name
            assert not name.startswith("/"), name
            assert ".." not in name.split("/"), name
            assert not inside or name == inside or name.startswith(inside + "/") or name in above
            assert member.isdir() or member.isfile() or member.issym(), name
            if kind == "dir":
                assert member.isdir() or name != (inside or "."), f"{name} replaces the folder"
            parts = name.split("/")
            for end in range(1, len(parts)):
                assert kinds.get("/".join(parts[:end])) != "link", f"{name} through a link"
            kinds[name] = "link" if member.issym() else "other"


def _place(data: bytes, kind: str, target: str) -> None:
    try:
        placement = place_inline(_item(data, kind, target), 1000, LIMIT, "inline input x")
    except JobError as error:
        failure = error
    else:
        check_placement(placement, target, kind)
        return
    assert failure.category == INPUT_FAILED
    assert "\n" not in failure.detail


@fuzz(weight=3)
@given(data=archives, kind=st.sampled_from(["dir", "file"]), target=st.sampled_from(TARGETS))
@example(  # a link, then a file written through it
    data=build([Member("a", "symlink", "/etc"), Member("a/passwd", "file", data=b"x")]),
    kind="dir",
    target="/inputs",
)
@example(data=build([Member("", "symlink", ".")]), kind="dir", target="/inputs")
def test_placements_stay_inside_their_target(data: bytes, kind: str, target: str) -> None:
    _place(data, kind, target)


@fuzz()
@given(
    data=st.one_of(st.binary(max_size=256), archives.map(lambda a: a[: len(a) // 2])),
    kind=st.sampled_from(["dir", "file"]),
)
def test_garbage_and_truncated_archives_fail_the_input(data: bytes, kind: str) -> None:
    _place(data, kind, "/inputs/x")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_gzip_bomb_fails_the_input_in_little_memory(kind: str) -> None:
    item = _item(gzip_bomb(4 * 1024**3), kind, "/inputs/bomb")  # 4 GiB unpacked
    tracemalloc.start()
    try:
        with pytest.raises(JobError, match="larger than"):
            place_inline(item, 1000, LIMIT, "inline input bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024**2
