"""Packing the client's files (``--code`` and local ``-i`` inputs) into inline inputs.

A file becomes a one-member archive placed at ``<target>``; a folder becomes an archive of
its contents placed under ``<target>``. The archive is a gzipped tar, base64 in the message.
``__pycache__``, ``*.pyc`` and ``.git`` are left out; links that leave the folder are refused,
and so are hard links with a name outside it (their content is packed as a file otherwise);
the total size of all packed files is capped (``shoal.limits.MAX_INLINE_BYTES``, the
requester's limit too) before anything is sent.

The last few archives are kept, each under the state of every packed entry (path, size,
modification time, mode, inode), so the same unchanged folder given for many jobs
(``--each``, ``exec_job`` in a loop) is read and compressed once, not once per job.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import tarfile
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import CodeArchiveError
from shoal.limits import MAX_INLINE_BYTES
from shoal.units import format_bytes

EXCLUDED_DIRS = frozenset({"__pycache__", ".git"})
EXCLUDED_SUFFIXES = (".pyc",)
RECENT_ARCHIVES = 4
"""Archives kept for reuse (each at most ``MAX_INLINE_BYTES`` of content)."""


@dataclass(frozen=True)
class Packed:
    """An archive ready to be an inline input."""

    kind: str  # "file" or "dir"
    data: str  # base64 of a tar.gz
    size: int  # bytes of file content packed


def _members(root: Path) -> list[Path]:
    """Files, folders and links under ``root``, sorted, exclusions left out."""
    found: list[Path] = []
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        here = Path(current)
        for name in dirs:
            found.append(here / name)
        for name in sorted(files):
            if not name.endswith(EXCLUDED_SUFFIXES):
                found.append(here / name)
    return found


def _check_link(path: Path, root: Path) -> None:
    try:
        target = (path.parent / os.readlink(path)).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a link loop (Python 3.11)
        raise CodeArchiveError(f"{path} is a link that never ends (a loop); remove it") from None
    if target != root and root not in target.parents:
        raise CodeArchiveError(
            f"{path} is a link to {target}, outside {root}; copy the file in instead"
        )


def _check_entries(entries: list[Path], root: Path) -> int:
    """The bytes of content to pack; ``CodeArchiveError`` for a link leaving ``root``, a hard
    link whose other names are not all in the folder, or anything but files and folders."""
    total = 0
    files: list[tuple[Path, os.stat_result]] = []
    for entry in entries:
        if entry.is_symlink():
            _check_link(entry, root)
        elif entry.is_file():
            files.append((entry, entry.stat()))
            total += files[-1][1].st_size
        elif not entry.is_dir():
            raise CodeArchiveError(f"{entry} is not a regular file or folder")
    names = Counter((stat.st_dev, stat.st_ino) for _, stat in files)
    for entry, stat in files:
        if root.is_dir() and stat.st_nlink > names[stat.st_dev, stat.st_ino]:
            raise CodeArchiveError(
                f"{entry} is a hard link to a file outside {root}; copy the file in instead"
            )
    return total


Signature = tuple[Path, tuple[tuple[str, int, int, int, int], ...]]
_recent: OrderedDict[Signature, Packed] = OrderedDict()


def _signature(root: Path, entries: list[Path]) -> Signature:
    """What decides an archive's bytes: each entry's path and state."""
    stamps = []
    for entry in entries:
        stat = entry.lstat()
        stamps.append((str(entry), stat.st_size, stat.st_mtime_ns, stat.st_mode, stat.st_ino))
    return root, tuple(stamps)


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> int:
    try:
        info = tar.gettarinfo(str(path), arcname=arcname)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if info.islnk():  # a second hard link to a file already packed: packed again
            info.type, info.linkname, info.size = tarfile.REGTYPE, "", path.stat().st_size
        if info.isfile():
            with path.open("rb") as handle:
                tar.addfile(info, handle)
            return info.size
        tar.addfile(info)
        return 0
    except PermissionError:
        raise CodeArchiveError(f"cannot read {path}: permission denied") from None


def pack(source: str | Path, *, budget: int = MAX_INLINE_BYTES, what: str = "--code") -> Packed:
    """Pack ``source`` (a file or folder), refusing more than ``budget`` bytes of content."""
    path = Path(source).expanduser()
    if not path.exists() and not path.is_symlink():
        raise CodeArchiveError(f"{what} {source}: no such file or directory")
    if path.is_symlink():
        raise CodeArchiveError(f"{what} {source}: is a link; name the file it points to")
    root = path.resolve()
    if not root.is_file() and not root.is_dir():
        raise CodeArchiveError(f"{what} {source}: not a regular file or folder")
    entries = [root] if root.is_file() else _members(root)
    total = _check_entries(entries, root)
    if total > budget:
        raise CodeArchiveError(
            f"{what} {source} is {format_bytes(total)}; the limit for files sent with a job "
            f"is {format_bytes(budget)} in total"
        )
    signature = _signature(root, entries)
    if (cached := _recent.get(signature)) is not None:
        _recent.move_to_end(signature)
        return cached
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        if root.is_file():
            _add(tar, root, root.name)
        else:
            for entry in entries:
                _add(tar, entry, entry.relative_to(root).as_posix())
    kind = "file" if root.is_file() else "dir"
    packed = Packed(kind=kind, data=base64.b64encode(buffer.getvalue()).decode(), size=total)
    _recent[signature] = packed
    while len(_recent) > RECENT_ARCHIVES:
        _recent.popitem(last=False)
    return packed
