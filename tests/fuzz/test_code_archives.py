"""``--code`` and local ``-i`` folders packed by the client (``shoal.client.archive.pack``).

Whatever the folder holds — links (symbolic and hard) leading out of it, absolute links,
link loops, FIFOs, files far over the budget — packing is a ``CodeArchiveError`` or an
archive that reads nothing from outside the folder and that the executor places as it is.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.client.archive import pack
from shoal.errors import CodeArchiveError
from shoal.executor.engines.docker.inputs import place_inline
from shoal.inline import inline_source
from shoal.model import InputSource
from tests.fuzz.profiles import fuzz
from tests.fuzz.test_inline_inputs import check_placement

SECRET = b"the sentinel outside the code folder"
BUDGET = 64 * 1024
PATHS = ["a", "b", "a/b", "a/c", "b/a", "a/b/c", "é", ".git/x", "__pycache__/m.pyc"]
KINDS = ["file", "dir", "symlink", "hardlink", "fifo", "huge"]
LINKS = ["a", "b", "a/b", ".", "..", "../outside/sentinel", "SENTINEL", "missing", "self",
         "a/../..", "b/../../outside"]  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One thing in the folder; ``link`` names a symlink's or hard link's target."""

    path: str
    kind: str
    link: str = ""


entries = st.lists(
    st.builds(Entry, st.sampled_from(PATHS), st.sampled_from(KINDS), st.sampled_from(LINKS)),
    max_size=6,
)


@pytest.fixture
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    (root / "outside").mkdir()
    (root / "outside" / "sentinel").write_bytes(SECRET)
    return root


def _make(folder: Path, entry: Entry, sentinel: Path) -> None:
    path = folder / entry.path
    if os.path.lexists(path):  # never open what is there: it may be a FIFO
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    link = {"SENTINEL": str(sentinel), "self": entry.path.rsplit("/", 1)[-1]}.get(
        entry.link, entry.link
    )
    if entry.kind == "file":
        path.write_bytes(b"inside")
    elif entry.kind == "dir":
        path.mkdir()
    elif entry.kind == "symlink":
        path.symlink_to(link)
    elif entry.kind == "hardlink":
        os.link(sentinel if entry.link.endswith(("sentinel", "SENTINEL")) else folder / link, path)
    elif entry.kind == "fifo":
        os.mkfifo(path)
    else:
        with path.open("wb") as handle:
            handle.truncate(2**40)  # a sparse terabyte


def build_folder(folder: Path, items: list[Entry], sentinel: Path) -> None:
    """``items`` made in order; one that cannot be made (its place is taken) is left out."""
    folder.mkdir()
    for entry in items:
        try:
            _make(folder, entry, sentinel)
        except OSError:
            continue


def _check_packed(data: str, kind: str) -> None:
    raw = base64.b64decode(data)
    if kind == "dir":  # a file named on its own is packed whatever its other names are
        assert SECRET not in gzip.decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        for member in tar:
            assert member.isfile() or member.isdir() or member.issym(), member.name
    item = InputSource.model_validate({"source": inline_source(kind, data), "target": "/code/x"})
    check_placement(place_inline(item, 1000, 10 * BUDGET, "--code"), "/code/x", kind)


@pytest.mark.timeout(120)
@fuzz(weight=3)
@given(items=entries, pick=st.sampled_from(["", "a", "b", "a/b"]))
@example(items=[Entry("a", "symlink", "a")], pick="")  # a link loop: was RuntimeError
@example(items=[Entry("a", "hardlink", "SENTINEL")], pick="")  # read the file outside
@example(items=[Entry("a", "file"), Entry("b", "hardlink", "a")], pick="")  # was dropped
@example(items=[Entry("a", "fifo")], pick="a")  # was packed as an empty folder
def test_packing_reads_nothing_outside_and_places_as_is(
    base: Path, items: list[Entry], pick: str
) -> None:
    folder = base / f"code{len(list(base.iterdir()))}"
    build_folder(folder, items, base / "outside" / "sentinel")
    try:
        packed = pack(folder / pick if pick else folder, budget=BUDGET)
    except CodeArchiveError as error:
        refusal = str(error)
    else:
        _check_packed(packed.data, packed.kind)
        return
    assert "\n" not in refusal
