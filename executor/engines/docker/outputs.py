"""Result folders read back after exit, as base64 tar.gz within the output limit.

Each result's archive holds the folder's *contents* (member names relative to the result
path, no leading folder), so ``tar -xzf`` in an empty folder recreates it. See
``shoal.executor.settings`` for what happens beyond ``job_output_limit``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile

from shoal.executor.engine import Outputs
from shoal.executor.engines.docker.runner import TAR_OVERHEAD, ContainerRunner
from shoal.model import ResultPath
from shoal.units import format_bytes


def repack(raw: bytes) -> bytes:
    """Docker's tar of a folder (``<name>/...``) as a gzipped tar of its contents."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(raw)) as source,
        tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as target,
    ):
        for member in source.getmembers():
            _, _, rest = member.name.partition("/")
            if not rest:
                continue
            member.name = rest
            if member.isfile():
                target.addfile(member, source.extractfile(member))
            elif member.isdir() or member.issym():
                target.addfile(member)
    return out.getvalue()


async def collect(
    runner: ContainerRunner, container: str, results: list[ResultPath], limit: int
) -> Outputs:
    """Read each result folder in order; leave out any that would go past ``limit``."""
    outputs = Outputs()
    remaining = limit
    for result in results:
        raw = await runner.get_archive(container, result.path, remaining)
        if raw is None or len(raw) > remaining + TAR_OVERHEAD:
            outputs.truncated = True
            outputs.notes.append(
                f"output {result.name!r} ({result.path}) left out: more than the "
                f"{format_bytes(remaining)} left of the {format_bytes(limit)} output limit"
            )
            continue
        remaining = max(0, remaining - len(raw))
        packed = await asyncio.to_thread(repack, raw)
        outputs.archives[result.name] = base64.b64encode(packed).decode("ascii")
    return outputs
