"""Reaping while running: what the gone executors of this node left, every ``reap_every`` s.

Each engine's ``clean_up`` runs once at start (``shoal.executor.service``); then, in a task of
its own, every ``reap_every`` seconds, the engines and the Docker gateway's proxy rules are
reaped again, so a killed executor's containers are stopped by the other executors of its
node (``docker compose --scale``) without waiting for a restart. The requester hands a gone
executor's claims to another at once; reaping stops the old run so that its side effects do
not go on beside the new one.

Unlike the reaping at start, a running executor takes another for gone only when it was
gone at two rounds in a row (:class:`Confirmed`): an executor whose connection to the broker
dropped for a moment (its control queue is declared again on reconnection) keeps its
containers. Each round of each reapable is bounded by ``deadline`` seconds and its errors are
logged, so a wedged engine cannot stop the next round, and the reaper never holds a job up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

import structlog

from shoal.liveness import Alive

log = structlog.get_logger("executor")


class Reapable(Protocol):
    """What leaves things behind when its executor is killed: an ``Engine``, or the Docker
    gateway's proxy rules (``shoal.executor.engines.docker.network.ProxyRules``)."""

    @property
    def name(self) -> str: ...

    async def clean_up(self, alive: Alive) -> None:
        """Remove what the gone executors of this node left (``alive`` tells which run)."""
        ...


class Confirmed:
    """An ``Alive`` that says an executor is gone only when it was gone at the round before
    too (:meth:`next_round` ends a round); ``me``, this executor, is always alive."""

    def __init__(self, alive: Alive, me: str) -> None:
        self._alive = alive
        self._me = me
        self._gone_before: set[str] = set()
        self._gone_now: set[str] = set()

    async def __call__(self, executor_id: str) -> bool:
        if executor_id == self._me or await self._alive(executor_id):
            return True
        self._gone_now.add(executor_id)
        return executor_id not in self._gone_before

    def next_round(self) -> None:
        """Start a new round: the executors found gone in the one ending are reaped in it if
        they are still gone."""
        self._gone_before, self._gone_now = self._gone_now, set()


async def reap_round(reapable: Iterable[Reapable], alive: Alive, deadline: float) -> None:
    """Let each of ``reapable`` clean up within ``deadline`` seconds; a failure is logged."""
    for each in reapable:
        try:
            async with asyncio.timeout(deadline):
                await each.clean_up(alive)
        except TimeoutError:
            log.error("orphans.reap_timed_out", reapable=each.name, deadline=deadline)
        except Exception as error:
            log.exception("orphans.reap_failed", reapable=each.name, error=str(error))


async def keep_reaping(
    reapable: Iterable[Reapable], alive: Alive, me: str, every: float, deadline: float
) -> None:
    """Reap every ``every`` seconds until cancelled (executors confirmed gone only)."""
    confirmed = Confirmed(alive, me)
    chosen = list(reapable)
    while True:
        await asyncio.sleep(every)
        await reap_round(chosen, confirmed, deadline)
        confirmed.next_round()
