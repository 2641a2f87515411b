"""Writing a job's output archives to disk without letting them escape the target folder.

Every member is checked before anything is written, in a first pass that streams the
archive without keeping its data: absolute names, ``..`` components, links pointing outside,
devices and FIFOs are refused with ``UsageError`` naming the member, and so is an archive
that unpacks to more than ``limit`` bytes (counted while it is decompressed, so a gzip bomb
is refused after reading about ``limit`` bytes, never unpacked whole). Extraction then goes
through tarfile's ``data`` filter as a second line of defence.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from pathlib import Path

from shoal.bounded import BoundedGzip
from shoal.errors import UsageError
from shoal.model import checked_output_name
from shoal.units import format_bytes

DEFAULT_LIMIT = 1024**3
"""Bytes an output may unpack to unless ``shoal job get --max-size`` says otherwise."""


def _escapes(name: str) -> bool:
    return name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/")


def check_member(member: tarfile.TarInfo, label: str) -> None:
    """Raise ``UsageError`` if ``member`` could write outside the extraction folder."""
    name = member.name
    if _escapes(name):
        raise UsageError(f"{label}: refusing {name!r}: it would be written outside the folder")
    if posixpath.normpath(name) == "." and not member.isdir():
        raise UsageError(f"{label}: refusing {name!r}: it names the folder itself")
    if member.isdev() or member.isfifo():
        raise UsageError(f"{label}: refusing {name!r}: device or FIFO")
    if member.issym() or member.islnk():
        target = member.linkname
        if not target:
            raise UsageError(f"{label}: refusing link {name!r}: it points at nothing")
        joined = posixpath.join(posixpath.dirname(name), target) if member.issym() else target
        if target.startswith("/") or posixpath.normpath(joined).startswith(".."):
            raise UsageError(f"{label}: refusing link {name!r} -> {target!r}: it leaves the folder")


def check_archive(data: bytes, label: str, limit: int) -> None:
    """Check every member of the tar.gz ``data`` and its unpacked size, keeping no data."""
    too_big = UsageError(
        f"{label}: refusing archive: it unpacks to more than {format_bytes(limit)} (see --max-size)"
    )
    unpacked = BoundedGzip(gzip.GzipFile(fileobj=io.BytesIO(data)), 2 * limit + 1024**2, too_big)
    total = 0
    with tarfile.open(fileobj=io.BufferedReader(unpacked, 1024**2), mode="r|") as tar:
        kinds: dict[str, str] = {}  # name → "dir", "file" or "link", of the members so far
        for member in tar:
            check_member(member, label)
            name = posixpath.normpath(member.name)
            if not member.isdir() and kinds.get(name) == "dir":
                raise UsageError(f"{label}: refusing {member.name!r}: it would replace a folder")
            if member.islnk() and (
                kinds.get(posixpath.normpath(member.linkname)) != "file"
                or posixpath.normpath(member.linkname) == name
            ):
                raise UsageError(
                    f"{label}: refusing hard link {member.name!r} -> {member.linkname!r}: "
                    "no regular file of that name before it"
                )
            parent = posixpath.dirname(name)
            while parent and parent != ".":
                kinds[parent] = "dir"
                parent = posixpath.dirname(parent)
            if member.isdir():
                kinds[name] = "dir"
            else:
                kinds[name] = "file" if member.isfile() else "link"
            total += member.size if member.isfile() else 0
            if total > limit:
                raise too_big


def output_folder(target: Path, name: str) -> Path:
    """``target/name`` for the output ``name``; ``UsageError`` if the name is not one segment."""
    try:
        checked_output_name(name)
    except ValueError as error:
        raise UsageError(f"refusing output {name!r}: its name {error}") from None
    return target / name


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; ``UsageError`` naming it if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        where = error.filename or folder
        raise UsageError(
            f"cannot create folder {str(where)!r} for the outputs: {error.strerror or error} "
            "(choose another with --output-dir)"
        ) from None


def extract(data: bytes, destination: Path, label: str, limit: int = DEFAULT_LIMIT) -> list[str]:
    """Extract a tar.gz into ``destination`` (created); the names of the files written."""
    try:
        check_archive(data, label, limit)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            make_folder(destination)
            tar.extractall(destination, filter="data")
            return [m.name for m in tar.getmembers() if m.isfile()]
    except tarfile.FilterError as error:
        raise UsageError(f"{label}: refusing archive: {error}") from None
    except (RecursionError, KeyError):  # a link tarfile could not make, then not copy either
        raise UsageError(f"{label}: refusing archive: a link in it cannot be made") from None
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise UsageError(f"{label}: not a readable archive: {error}") from None
    except OSError as error:  # e.g. a file member named "a/." or a file where a folder goes
        raise UsageError(
            f"{label}: refusing archive: cannot write {error.filename!r}: {error.strerror}"
        ) from None
