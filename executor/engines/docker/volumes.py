"""A job's volumes cannot fill the node's disk: a per-file size limit and a watchdog.

Docker's ``local`` volumes on overlay2/ext4 have no size option (a ``tmpfs`` volume is
unmounted, and emptied, when its container exits, before the outputs are read). So each job
gets two guards, both set by ``SHOAL_VOLUME_LIMIT``:

- ``RLIMIT_FSIZE`` (the container's ``fsize`` ulimit): no single file grows past the limit;
  a process that tries is killed by ``SIGXFSZ`` (exit code 153 from a shell).
- A watchdog (:func:`watch`) that measures the job's anonymous volumes (``/outputs``,
  ``/code``, input folders) every ``volume_check_seconds`` and returns once they hold more
  than the limit (allocated blocks, so sparse files count for what they take; every entry
  counts at least one block, so a flood of empty files does too); the job is then killed and
  fails with ``output too large``.

The walk (:func:`disk_usage`) never follows a link: each folder is opened relative to its
parent with ``O_NOFOLLOW``, so a job swapping a folder for a link cannot point it elsewhere,
and it stops counting as soon as the limit is passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat

import structlog

from shoal.executor.engines.docker.runner import ContainerRunner, RunnerError

log = structlog.get_logger("executor")

BLOCK = 4096
"""What an entry costs at least (an inode and a directory slot)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def disk_usage(path: str, limit: int) -> int:
    """Bytes allocated under ``path`` (links never followed); stops counting past ``limit``."""
    total = 0
    pending = [os.open(path, _DIR_FLAGS)]
    try:
        while pending and total <= limit:
            folder = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        info = entry.stat(follow_symlinks=False)
                        total += max(info.st_blocks * 512, BLOCK)
                        if stat.S_ISDIR(info.st_mode):
                            with contextlib.suppress(OSError):  # gone, or swapped for a link
                                pending.append(os.open(entry.name, _DIR_FLAGS, dir_fd=folder))
                        if total > limit:
                            break
            except FileNotFoundError:
                continue
            finally:
                os.close(folder)
    finally:
        for folder in pending:
            os.close(folder)
    return total


def folders_usage(folders: list[str], limit: int) -> int | None:
    """The :func:`disk_usage` of ``folders`` together; ``None`` if one cannot be seen here
    (an executor in a container without the engine's volume folders mounted)."""
    if not all(os.path.isdir(folder) for folder in folders):
        return None
    used = 0
    for folder in folders:
        try:
            used += disk_usage(folder, limit - used)
        except FileNotFoundError:
            continue
        if used > limit:
            break
    return used


async def watch(runner: ContainerRunner, container: str, limit: int, every: float) -> int:
    """Return the usage once the container's volumes hold more than ``limit`` bytes.

    Waits for ever (until cancelled) when they stay within it, or when they cannot be
    measured (logged once per job).
    """
    while True:
        try:
            used = await runner.volume_usage(container, limit)
        except (RunnerError, OSError) as error:
            log.warning("volumes.not_measured", container=container, error=str(error))
            await asyncio.Event().wait()
        if used is None:
            log.warning("volumes.not_measured", container=container, error="folders not visible")
            await asyncio.Event().wait()
        elif used > limit:
            log.warning("volumes.over_limit", container=container, used=used, limit=limit)
            return used
        await asyncio.sleep(every)
