"""Group commit: many concurrent callers, one database transaction per round.

Each caller (a recorder delivery, a round of submissions) awaits ``batcher.submit(item)``;
while one round is being written the next items queue up and go in the next round together.
Nothing waits on a timer, so a lone item is written at once, and under load one commit
serves everything that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class Batcher(Generic[T, R]):
    """Runs ``function`` on the items submitted meanwhile; one result per item, in order.

    If a round fails, every caller in it gets the exception.
    """

    def __init__(self, function: BatchFunction[T, R], *, max_items: int = 256) -> None:
        self._function = function
        self._max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``function([.., item, ..])``'s result for ``item``."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the handlers that are ready now join this round
        while self._pending:
            batch = self._pending[: self._max_items]
            del self._pending[: self._max_items]
            try:
                results = await self._function([item for item, _ in batch])
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            except BaseException:
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            for (_, future), value in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(value)

    async def close(self) -> None:
        """Wait for the round in progress (and those queued behind it) to finish."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
