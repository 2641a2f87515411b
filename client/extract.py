"""Writing a job's output archives to disk without letting them escape the target folder.

Every member is checked before anything is written: absolute names, ``..`` components,
links pointing outside, devices and FIFOs are refused with ``UsageError`` naming the member.
Extraction then goes through tarfile's ``data`` filter as a second line of defence.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from pathlib import Path

from shoal.errors import UsageError


def _escapes(name: str) -> bool:
    return name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/")


def check_members(tar: tarfile.TarFile, label: str) -> None:
    """Raise ``UsageError`` if any member could write outside the extraction folder."""
    for member in tar.getmembers():
        name = member.name
        if _escapes(name):
            raise UsageError(f"{label}: refusing {name!r}: it would be written outside the folder")
        if member.isdev() or member.isfifo():
            raise UsageError(f"{label}: refusing {name!r}: device or FIFO")
        if member.issym() or member.islnk():
            target = member.linkname
            joined = posixpath.join(posixpath.dirname(name), target) if member.issym() else target
            if target.startswith("/") or posixpath.normpath(joined).startswith(".."):
                raise UsageError(
                    f"{label}: refusing link {name!r} -> {target!r}: it leaves the folder"
                )


def extract(data: bytes, destination: Path, label: str) -> list[str]:
    """Extract a tar.gz into ``destination`` (created); the names of the files written."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            check_members(tar, label)
            destination.mkdir(parents=True, exist_ok=True)
            tar.extractall(destination, filter="data")
            return [m.name for m in tar.getmembers() if m.isfile()]
    except tarfile.FilterError as error:
        raise UsageError(f"{label}: refusing archive: {error}") from None
    except tarfile.TarError as error:
        raise UsageError(f"{label}: not a readable archive: {error}") from None
