"""``shoal job get`` writes archives only inside the folder it was given."""

from __future__ import annotations

import base64
import io
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from shoal.client.extract import extract, output_folder
from shoal.errors import UsageError
from tests.bombs import zeros_bomb


def archive(*members: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            if member.isfile():
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
            else:
                tar.addfile(member)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_extracts_files_and_folders(tmp_path: Path) -> None:
    data = archive(member("sub", tarfile.DIRTYPE), member("sub/a.txt"), member("b.txt"))
    assert sorted(extract(data, tmp_path / "out", "output x")) == ["b.txt", "sub/a.txt"]
    assert (tmp_path / "out" / "sub" / "a.txt").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (member("/etc/evil"), "outside the folder"),
        (member("../evil"), "outside the folder"),
        (member("a/../../evil"), "outside the folder"),
        (member("link", tarfile.SYMTYPE, "/etc/passwd"), "leaves the folder"),
        (member("link", tarfile.SYMTYPE, "../../x"), "leaves the folder"),
        (member("hard", tarfile.LNKTYPE, "../x"), "leaves the folder"),
        (member("dev", tarfile.CHRTYPE), "device"),
    ],
)
def test_refuses_members_that_escape(bad: tarfile.TarInfo, why: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=why):
        extract(archive(member("fine.txt"), bad), tmp_path / "out", "output x")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("members", "why"),
    [
        # a link over a folder: tarfile falls back to copying the target, itself (recursion)
        ((member("d", tarfile.DIRTYPE), member("d", tarfile.SYMTYPE, "d")), "replace a folder"),
        ((member("d/f"), member("d", tarfile.SYMTYPE, "e")), "replace a folder"),
        ((member("d", tarfile.DIRTYPE), member("d", tarfile.LNKTYPE, "d")), "replace a folder"),
        ((member("a"), member("h", tarfile.LNKTYPE, "h")), "no regular file"),
        ((member("d", tarfile.DIRTYPE), member("d/x", tarfile.SYMTYPE, "")), "points at nothing"),
        (
            (member("a"), member("l", tarfile.SYMTYPE, "a"), member("h", tarfile.LNKTYPE, "l")),
            "no regular file",
        ),
    ],
)
def test_refuses_members_that_replace_folders_or_link_to_no_file(
    members: tuple[tarfile.TarInfo, ...], why: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=why):
        extract(archive(*members), tmp_path / "out", "output x")
    assert not (tmp_path / "out").exists()


def test_internal_links_are_fine(tmp_path: Path) -> None:
    data = archive(
        member("a.txt"),
        member("sub", tarfile.DIRTYPE),
        member("sub/l", tarfile.SYMTYPE, "../a.txt"),
    )
    extract(data, tmp_path / "out", "output x")
    assert (tmp_path / "out" / "sub" / "l").read_bytes() == b"x"


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a readable archive"):
        extract(b"nope", tmp_path, "output x")


def test_a_gzip_bomb_is_refused_in_little_memory(tmp_path: Path) -> None:
    bomb = base64.b64decode(zeros_bomb({"zeros": 2 * 1024**3}))
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"unpacks to more than 64.0 MiB \(see --max-size\)"):
            extract(bomb, tmp_path / "out", "output x", limit=64 * 1024**2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2
    assert not (tmp_path / "out").exists()


def test_many_members_over_the_limit_are_refused(tmp_path: Path) -> None:
    data = archive(*(member(f"f{n}") for n in range(20)), data=b"y" * 1000)
    with pytest.raises(UsageError, match="unpacks to more than"):
        extract(data, tmp_path / "out", "output x", limit=10_000)
    assert not (tmp_path / "out").exists()
    assert len(extract(data, tmp_path / "out", "output x", limit=20_000)) == 20


@pytest.mark.parametrize("name", ["/abs/path", "../../x", "..", "a/b", ""])
def test_output_names_that_leave_the_folder_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="refusing output"):
        output_folder(tmp_path / "out", name)
    assert output_folder(tmp_path / "out", "results.v2") == tmp_path / "out" / "results.v2"


def test_nothing_is_written_outside_the_folder(tmp_path: Path) -> None:
    """The attack: ``..``, absolute and link members in one archive, after a good one."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for bad in (
        member("../outside/dotdot"),
        member(str(outside / "absolute")),
        member("link", tarfile.SYMTYPE, str(outside)),
        member("hard", tarfile.LNKTYPE, str(outside / "x")),
    ):
        with pytest.raises(UsageError, match="refusing"):
            extract(archive(member("good.txt"), bad), tmp_path / "out", "output x")
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "out").exists()
