"""Reaping: the containers of this node's executors that are gone.

Every job container is labelled with its node and its executor (``runner.LABEL_NODE``,
``runner.LABEL_EXECUTOR``). A killed executor leaves its containers behind; the next executor
started on the node, and the others of the node while they run (``shoal.executor.reaping``),
remove those whose executor no longer answers (``Alive``, asked of the
broker, see ``shoal.liveness``), so several executors may share a node id.
"""

from __future__ import annotations

import asyncio

import structlog

from shoal.executor.engines.docker.removal import REMOVE_DEADLINE, remove_within
from shoal.executor.engines.docker.runner import (
    LABEL_EXECUTOR,
    LABEL_NODE,
    ContainerRunner,
    RunnerError,
)
from shoal.liveness import Alive

log = structlog.get_logger("executor")


async def reap_orphans(
    runner: ContainerRunner, node_id: str, alive: Alive, *, deadline: float = REMOVE_DEADLINE
) -> int:
    """Remove this node's containers whose executor is gone; returns how many were removed.

    A container without an executor label counts as an orphan; each executor is asked about
    once. Listing and the removals (at once) get ``deadline`` seconds: a container the engine
    cannot remove in time is logged and skipped, so a wedged one cannot stop this executor
    starting or hold up its next round.
    """
    try:
        async with asyncio.timeout(deadline):
            found = await runner.list_labelled({LABEL_NODE: node_id})
    except (TimeoutError, RunnerError) as error:
        log.error("orphans.list_failed", node=node_id, error=str(error) or "timed out")
        return 0
    verdicts: dict[str, bool] = {}
    orphans: list[str] = []
    for container, labels in found.items():
        owner = labels.get(LABEL_EXECUTOR, "")
        if owner not in verdicts:
            verdicts[owner] = bool(owner) and await alive(owner)
        if not verdicts[owner]:
            orphans.append(container)
    removed = await asyncio.gather(*(remove_within(runner, c, deadline) for c in orphans))
    reaped = sum(removed)
    if found:  # info only when there was something to reap: a running executor reaps often
        kept = sorted(owner for owner, living in verdicts.items() if living)
        report = log.info if orphans else log.debug
        report("orphans.reaped", count=reaped, node=node_id, kept_for=kept or None)
    return reaped
