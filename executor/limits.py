"""The limits a job runs with: its own, else the node's defaults, capped by the node's maxima.

Each limit the node lowered is noted (``cpu 64 → 2 (node maximum)``); the notes travel in the
run's ``running`` event (``JobEvent.lowered``), so the requester records them with the run and
``job describe`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.executor.settings import ExecutorSettings
from shoal.model import Task
from shoal.units import format_bytes, format_duration


@dataclass(frozen=True)
class Limits:
    """The limits a job runs with, after node defaults and maxima."""

    memory: int
    cpu: float
    execution_timeout: float
    grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when the job is stopped or times out."""
    notes: list[str] = field(default_factory=list)
    """One line per limit lowered to the node's maximum: what, asked → given, why."""


def _lowered(what: str, asked: str, given: str) -> str:
    return f"{what} {asked} → {given} (node maximum)"


def limits(task: Task, settings: ExecutorSettings, waited: float = 0.0) -> Limits:
    """Memory, CPU, execution timeout and stop grace: the job's, else the node's defaults,
    capped."""
    notes: list[str] = []
    memory = task.resources.memory or settings.default_memory
    if memory > settings.max_memory:
        notes.append(_lowered("memory", format_bytes(memory), format_bytes(settings.max_memory)))
        memory = settings.max_memory
    cpu = task.resources.cpu or settings.default_cpu
    if cpu > settings.max_cpu:
        notes.append(_lowered("cpu", f"{cpu:g}", f"{settings.max_cpu:g}"))
        cpu = settings.max_cpu
    timeout = task.timeouts.execution or settings.default_execution_timeout
    if timeout > settings.max_execution_timeout:
        given = settings.max_execution_timeout
        notes.append(
            _lowered("execution timeout", format_duration(timeout), format_duration(given))
        )
        timeout = given
    if task.timeouts.total is not None:
        timeout = min(timeout, max(task.timeouts.total - waited, 0.001))
    grace = settings.stop_grace if task.timeouts.grace is None else task.timeouts.grace
    if grace > settings.stop_grace_max:
        given = settings.stop_grace_max
        notes.append(_lowered("stop grace", format_duration(grace), format_duration(given)))
        grace = given
    return Limits(memory=memory, cpu=cpu, execution_timeout=timeout, grace=grace, notes=notes)
