"""Container removal with a deadline: a wedged engine cannot hang a job slot or a shutdown.

``remove_within`` gives the engine ``deadline`` seconds to remove a container. A removal that
times out or fails is logged (``container.remove_timed_out`` / ``container.remove_failed``)
and handed to :class:`Leftovers`, which retries it in the background (after 1 s, then twice as
long each time up to ``RETRY_EVERY``: an engine restarting is back within seconds), each
attempt under the same deadline, until it succeeds or the executor closes; closing tries once
more, within ``CLOSE_DEADLINE``. A container still left then carries its executor's label, so
the next executor started on the node reaps it as an orphan (that reaping has deadlines too,
see ``orphans.reap_orphans``).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from shoal.executor.engines.docker.runner import ContainerRunner, RunnerError

log = structlog.get_logger("executor")

REMOVE_DEADLINE = 30.0
"""Seconds the engine gets to remove one container."""
RETRY_EVERY = 30.0
"""Most seconds between background attempts to remove a container left behind."""
RETRY_FIRST = 1.0
"""Seconds before the first background attempt (doubled after each failed one)."""
CLOSE_DEADLINE = 5.0
"""Seconds the engine gets, at close, for a last attempt at the containers left."""


async def remove_within(runner: ContainerRunner, container: str, deadline: float) -> bool:
    """Remove ``container`` within ``deadline`` seconds; ``False`` (logged) if it was not."""
    try:
        async with asyncio.timeout(deadline):
            await runner.remove(container)
    except TimeoutError:
        log.error("container.remove_timed_out", container=container, deadline=deadline)
        return False
    except RunnerError as error:
        log.error("container.remove_failed", container=container, error=str(error))
        return False
    return True


class Leftovers:
    """Containers whose removal failed, retried in the background until removed."""

    def __init__(
        self,
        runner: ContainerRunner,
        *,
        deadline: float = REMOVE_DEADLINE,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self._runner = runner
        self._deadline = deadline
        self._retry_every = retry_every
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def pending(self) -> set[str]:
        """The containers not removed yet."""
        return set(self._tasks)

    async def remove(self, container: str) -> bool:
        """Remove ``container`` within the deadline, else keep retrying it in the background."""
        if await remove_within(self._runner, container, self._deadline):
            return True
        if container not in self._tasks:
            log.warning("container.left_behind", container=container, retry_every=self._retry_every)
            self._tasks[container] = asyncio.create_task(self._retry(container))
        return False

    async def _retry(self, container: str) -> None:
        delay = min(RETRY_FIRST, self._retry_every)
        try:
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_every)
                if await remove_within(self._runner, container, self._deadline):
                    log.info("container.removed_late", container=container)
                    return
        finally:
            self._tasks.pop(container, None)

    async def settled(self) -> None:
        """Wait until every container left behind so far is removed."""
        await asyncio.gather(*self._tasks.values())

    async def close(self) -> None:
        """Stop retrying and try each container left once more (what is still left is
        reaped by the next executor on the node)."""
        left = list(self._tasks)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        deadline = min(self._deadline, CLOSE_DEADLINE)
        removed = await asyncio.gather(
            *(remove_within(self._runner, container, deadline) for container in left)
        )
        if not all(removed):
            log.warning("containers.left_for_reaping", count=removed.count(False))
