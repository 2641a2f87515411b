"""``shoal job get`` writes archives only inside the folder it was given."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from client.extract import extract
from shoal.errors import UsageError


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
