"""What a job that has not started waits for, from the executors' heartbeats.

A job waits in its engine's compute queue (``shoal.topology``) until an executor serving
that engine has a free slot. No job is refused because no executor serves its engine now:
executors come and go (an autoscaler may start the first one when work is queued), so
``job describe`` says instead what the job is waiting for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WAITING_STATES = frozenset({"pending", "queued"})


def waiting_for(engine: str, nodes: Sequence[dict[str, Any]]) -> str:
    """One line on what a job for ``engine`` waits for, given the live ``nodes``."""
    serving = [n for n in nodes if n.get("role") == "executor" and engine in n.get("engines", [])]
    if not serving:
        others = sorted({e for n in nodes if n.get("role") == "executor" for e in n["engines"]})
        elsewhere = f" (executors alive serve: {', '.join(others)})" if others else ""
        return (
            f"an executor serving engine {engine!r}: none is alive{elsewhere}; "
            "the job runs once one starts (shoal status shows the executors)"
        )
    slots = sum(int(n.get("slots", 0)) for n in serving)
    busy = sum(len(n.get("running", [])) for n in serving)
    return (
        f"a free slot: {len(serving)} executor(s) serve engine {engine!r}, "
        f"{busy} of their {slots} slot(s) busy"
    )
