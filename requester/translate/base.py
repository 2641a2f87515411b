"""The translator plug-in interface and the helpers translators share."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from shoal.errors import TranslationError
from shoal.model import Task


@runtime_checkable
class Translator(Protocol):
    """Turns a task of one job type into a task a native engine (docker) runs.

    ``translate`` must not mutate its argument and must raise only ``TranslationError``
    (anything else is wrapped into one by the caller).

    Optional attributes, shown by ``shoal job-types`` (``shoal.requester.jobtypes``): ``engine``,
    the engine its tasks run on (default ``docker``), and ``choices``, template option →
    the values it accepts (``{"version": ("3.11", "3.12")}``); and ``valid_tasks``: ``True``
    when every task it returns is valid by construction (each new part made by a model's
    constructor, which validates, and the task's own rules kept), so ``translate_job`` does
    not validate it again (default ``False``).
    """

    job_type: str

    def translate(self, task: Task) -> Task:
        """A new task, equivalent to ``task``, with a native engine."""
        ...


def argv_param(task: Task, job_type: str) -> list[str]:
    """The user's argv from ``engine.params.arguments``, checked to be a list of strings."""
    params: dict[str, Any] = task.engine.params
    if "command" not in params:
        raise TranslationError(
            f"{job_type} job has no engine.params.command; submit it with shoal exec {job_type}"
        )
    arguments = params.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise TranslationError(
            f"{job_type} job: engine.params.arguments must be a list of strings, "
            f"got {type(arguments).__name__}"
        )
    return list(arguments)
