"""Writing a job's output archives to disk without letting them escape the target folder.

Every member is checked before anything is written: absolute names, ``..`` components,
links pointing outside, devices and FIFOs are refused with ``UsageError`` naming the member,
and so is an archive larger than a limit unpacked, or one whose members cannot be written.
Extraction then goes through tarfile's ``data`` filter as a second line of defence.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from pathlib import Path

from shoal.errors import UsageError
from shoal.units import format_bytes

DEFAULT_LIMIT = 1024**3
"""Bytes an output archive may unpack to."""


def _escapes(name: str) -> bool:
    return name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/")


def check_members(tar: tarfile.TarFile, label: str, limit: int = DEFAULT_LIMIT) -> None:
    """Raise ``UsageError`` if any member could write outside the extraction folder, or the
    members' sizes add up to more than ``limit`` bytes (checked as each header is read, so a
    gzip bomb's data is never decompressed)."""
    total = 0
    seen: set[str] = set()
    for member in tar:
        total += member.size if member.isfile() else 0
        if total > limit:
            raise UsageError(
                f"{label}: refusing archive: it is larger than {format_bytes(limit)} unpacked"
            )
        name = member.name
        if _escapes(name):
            raise UsageError(f"{label}: refusing {name!r}: it would be written outside the folder")
        if posixpath.normpath(name) == "." and not member.isdir():
            raise UsageError(f"{label}: refusing {name!r}: it names the folder itself")
        if member.isdev() or member.isfifo():
            raise UsageError(f"{label}: refusing {name!r}: device or FIFO")
        if member.issym() or member.islnk():
            target = member.linkname
            joined = posixpath.join(posixpath.dirname(name), target) if member.issym() else target
            if target.startswith("/") or posixpath.normpath(joined).startswith(".."):
                raise UsageError(
                    f"{label}: refusing link {name!r} -> {target!r}: it leaves the folder"
                )
        if member.islnk() and posixpath.normpath(member.linkname) not in seen:
            raise UsageError(
                f"{label}: refusing hard link {name!r} -> {member.linkname!r}: "
                "no member of that name before it"
            )
        seen.add(posixpath.normpath(name))


def extract(data: bytes, destination: Path, label: str, limit: int = DEFAULT_LIMIT) -> list[str]:
    """Extract a tar.gz into ``destination`` (created); the names of the files written."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            check_members(tar, label, limit)
            destination.mkdir(parents=True, exist_ok=True)
            tar.extractall(destination, filter="data")
            return [m.name for m in tar.getmembers() if m.isfile()]
    except tarfile.FilterError as error:
        raise UsageError(f"{label}: refusing archive: {error}") from None
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise UsageError(f"{label}: not a readable archive: {error}") from None
    except OSError as error:  # e.g. a file member named "." or a file where a folder goes
        if error.filename is None:  # gzip.BadGzipFile
            raise UsageError(f"{label}: not a readable archive: {error}") from None
        raise UsageError(
            f"{label}: refusing archive: cannot write {error.filename!r}: {error.strerror}"
        ) from None
