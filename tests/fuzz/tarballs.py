"""Hostile tar archives, and checks of what a folder looks like after one was unpacked.

:func:`archives` draws gzipped tars whose members may have absolute names, ``..``
components, backslashes, duplicate names, links (symbolic and hard) pointing anywhere,
devices and FIFOs, and declared sizes far larger than their data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

PARTS = ["a", "b", "c", "..", ".", "", "outside", "sentinel", "é", "a b", "\\", "..\\x"]
LINK_TARGETS = ["a", "b", "a/b", ".", "..", "../..", "/", "/etc/passwd", "../outside",
                "../../outside/sentinel", "a/../..", "b/..", "//tmp", ""]  # fmt: skip
TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}
names = st.one_of(
    st.lists(st.sampled_from(PARTS), min_size=1, max_size=4).map("/".join),
    st.lists(st.sampled_from(PARTS), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)),
)
link_targets = st.one_of(st.sampled_from(LINK_TARGETS), names)


@dataclass(frozen=True)
class Member:
    """One member as drawn: ``size`` may claim more bytes than ``data`` holds."""

    name: str
    kind: str
    link: str = ""
    data: bytes = b""
    size: int | None = None


members = st.one_of(
    st.builds(Member, names, st.just("file"), data=st.binary(max_size=64)),
    st.builds(Member, names, st.sampled_from(["dir", "fifo", "chardev", "blockdev"])),
    st.builds(Member, names, st.sampled_from(["symlink", "hardlink"]), link_targets),
)


def build(items: list[Member]) -> bytes:
    """The gzipped tar of ``items``, written member by member as drawn."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped:
        raw = tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        for item in items:
            info = tarfile.TarInfo(item.name)
            info.type = TYPES[item.kind]
            info.linkname = item.link
            info.mode = 0o755 if item.kind == "dir" else 0o644
            info.size = len(item.data) if item.kind == "file" else 0
            raw.addfile(info, io.BytesIO(item.data) if item.kind == "file" else None)
        raw.close()
    return buffer.getvalue()


archives = st.lists(members, min_size=1, max_size=6).map(build)


def gzip_bomb(size: int, name: str = "bomb") -> bytes:
    """A tar.gz of one member of ``size`` zero bytes, about a thousandth of that gzipped.

    Built as concatenated gzip members (a valid gzip file), each 1 MiB of zeros compressed
    once and repeated, so building a bomb of gigabytes takes milliseconds.
    """
    header = tarfile.TarInfo(name)
    header.size = size
    mebibyte = gzip.compress(bytes(1 << 20), mtime=0)
    whole, rest = divmod(size, 1 << 20)
    tail = bytes(rest) + bytes(-size % 512) + bytes(1024)
    return b"".join(
        [gzip.compress(header.tobuf(), mtime=0), mebibyte * whole, gzip.compress(tail, mtime=0)]
    )


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every path under ``root`` (not following links, ``skip`` left out) → what it is."""
    found: dict[str, str] = {}
    for current, dirs, files in os.walk(root):
        here = Path(current)
        if skip is not None and here == skip:
            dirs[:] = []
            continue
        for name in [*dirs, *files]:
            path = here / name
            if skip is not None and path == skip:
                continue
            if path.is_symlink():
                found[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                found[str(path)] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path)] = "dir" if path.is_dir() else "other"
    return found


def links_leaving(root: Path) -> list[str]:
    """Links under ``root`` that resolve outside it."""
    real = root.resolve()
    leaving = []
    for current, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(current) / name
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target != real and real not in target.parents:
                    leaving.append(f"{path} -> {os.readlink(path)}")
    return leaving
