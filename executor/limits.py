"""The limits a job runs with: its own, else the node's defaults, capped by the node's maxima."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.executor.settings import ExecutorSettings
from shoal.model import Task
from shoal.units import format_bytes


@dataclass(frozen=True)
class Limits:
    """The limits a job runs with, after node defaults and maxima."""

    memory: int
    cpu: float
    execution_timeout: float
    grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when the job is stopped or times out."""
    notes: list[str] = field(default_factory=list)


def limits(task: Task, settings: ExecutorSettings, waited: float = 0.0) -> Limits:
    """Memory, CPU, execution timeout and stop grace: the job's, else the node's defaults,
    capped."""
    notes: list[str] = []
    memory = task.resources.memory or settings.default_memory
    if memory > settings.max_memory:
        notes.append(f"memory lowered from {format_bytes(memory)} to the node maximum")
        memory = settings.max_memory
    cpu = task.resources.cpu or settings.default_cpu
    if cpu > settings.max_cpu:
        notes.append(f"cpu lowered from {cpu:g} to the node maximum {settings.max_cpu:g}")
        cpu = settings.max_cpu
    timeout = task.timeouts.execution or settings.default_execution_timeout
    if timeout > settings.max_execution_timeout:
        notes.append(f"execution timeout lowered from {timeout:g}s to the node maximum")
        timeout = settings.max_execution_timeout
    if task.timeouts.total is not None:
        timeout = min(timeout, max(task.timeouts.total - waited, 0.001))
    grace = settings.stop_grace if task.timeouts.grace is None else task.timeouts.grace
    if grace > settings.stop_grace_max:
        notes.append(f"stop grace lowered from {grace:g}s to the node maximum")
        grace = settings.stop_grace_max
    return Limits(memory=memory, cpu=cpu, execution_timeout=timeout, grace=grace, notes=notes)
