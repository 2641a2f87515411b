"""Turning a submitted job into the job executors run, keeping the original."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shoal.errors import ShoalError, TranslationError
from shoal.model import NATIVE_ENGINES, Job, JobState, Task, derived_job_id, describe_errors

from .registry import TranslatorRegistry

META_JOB_TYPE = "shoal.job_type"
META_TRANSLATOR = "shoal.translator"
META_ORIGINAL_ID = "shoal.original_id"
META_TRANSLATED_ID = "shoal.translated_id"


@dataclass(frozen=True)
class Translation:
    """A submission and what it became: ``runnable`` is ``original`` for native jobs."""

    original: Job
    runnable: Job

    @property
    def translated(self) -> bool:
        """Whether the submission became a new job."""
        return self.runnable.id != self.original.id


def translate_job(
    job: Job, registry: TranslatorRegistry, update: Mapping[str, Any] | None = None
) -> Translation:
    """Translate ``job`` if its engine is not native, or is a native engine's job type in the
    form ``shoal exec`` gives (``engine.params.command``, e.g. ``shoal exec wasm``) and a
    translator for it is registered; never mutates ``job``. ``update``: fields of ``job`` to
    set first, as ``job.model_copy(update=update)`` would (the requester's owner, state and
    idempotent ID), made in the same copies as the translation's own.

    The new job's ID is derived from the original's, so translating the same submission
    twice yields the same job. Raises only ``ShoalError`` subclasses.
    """
    changes = dict(update or {})
    job_type = job.engine_type
    typed = "command" in job.task.engine.params and job_type.lower() in registry.job_types()
    if job_type in NATIVE_ENGINES and not typed:
        native = job.model_copy(update=changes) if changes else job
        return Translation(original=native, runnable=native)
    translator = registry.get(job_type)
    try:
        task = translator.translate(job.task)
    except ShoalError:
        raise
    except Exception as error:
        raise TranslationError(
            f"translator for {job_type!r} failed: {type(error).__name__}: {error}"
        ) from error
    if task.engine.type not in NATIVE_ENGINES:
        raise TranslationError(
            f"translator for {job_type!r} produced engine {task.engine.type!r}, "
            f"not one of {', '.join(sorted(NATIVE_ENGINES))}"
        )
    translator_name = f"{type(translator).__module__}.{type(translator).__qualname__}"
    original_id = str(changes.get("id", job.id))
    runnable_id = derived_job_id(original_id)
    # One validation of the whole new task, unless the translator builds only valid ones
    # (``valid_tasks``): a model_copy, which translators may return, is not validated. The
    # rest of the new job is the validated ``job`` with a derived ID and string meta, valid
    # by construction.
    if not getattr(translator, "valid_tasks", False):
        try:
            task = Task.model_validate(task.model_dump(mode="json"))
        except ValidationError as error:
            errors = describe_errors(error, prefix="tasks[0]")
            raise TranslationError(
                f"translator for {job_type!r} produced an invalid job: {errors}"
            ) from None
    runnable = job.model_copy(
        update={
            **changes,
            "id": runnable_id,
            "meta": {
                **job.meta,
                META_JOB_TYPE: job_type,
                META_TRANSLATOR: translator_name,
                META_ORIGINAL_ID: original_id,
            },
            "tasks": [task],
            "state": JobState.PENDING,
        }
    )
    original = job.model_copy(
        update={
            **changes,
            "meta": {**job.meta, META_TRANSLATED_ID: runnable_id},
            "state": JobState.TRANSLATED,
        }
    )
    return Translation(original=original, runnable=runnable)
