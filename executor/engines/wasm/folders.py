"""A job's host folders: made per run, filled from its inputs, packed as results."""

from __future__ import annotations

import base64
import io
import os
import tarfile

from shoal.executor.engine import Outputs
from shoal.model import ResultPath
from shoal.units import format_bytes


def extract(tar: bytes, folder: str) -> None:
    """Extract ``tar`` (an input placement made by the executor) into ``folder``."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(folder, filter="data")


def _size(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def _pack(folder: str) -> bytes:
    """A gzipped tar of ``folder``'s contents (names relative to it, links kept as links)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as archive:
        for root, dirs, files in os.walk(folder):
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                archive.add(path, arcname=os.path.relpath(path, folder), recursive=False)
    return out.getvalue()


def collect(folders: dict[str, str], results: list[ResultPath], limit: int) -> Outputs:
    """Pack each result folder (a job path under one of ``folders``: job path → host folder)
    in order; leave out any that would go past ``limit`` bytes."""
    outputs = Outputs()
    remaining = limit
    for result in results:
        host = host_path(folders, result.path)
        if host is None or not os.path.isdir(host):
            outputs.notes.append(f"output {result.name!r} ({result.path}) left out: no such folder")
            continue
        size = _size(host)
        if size > remaining:
            outputs.truncated = True
            outputs.notes.append(
                f"output {result.name!r} ({result.path}) left out: more than the "
                f"{format_bytes(remaining)} left of the {format_bytes(limit)} output limit"
            )
            continue
        remaining -= size
        outputs.archives[result.name] = base64.b64encode(_pack(host)).decode("ascii")
    return outputs


def host_path(folders: dict[str, str], path: str) -> str | None:
    """The host path of job path ``path`` (``None`` when it is under none of ``folders``)."""
    path = os.path.normpath(path)
    for job_root, host in folders.items():
        if path == job_root:
            return host
        if path.startswith(job_root + "/"):
            return os.path.join(host, os.path.relpath(path, job_root))
    return None
