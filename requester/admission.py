"""What the cluster can run at all, checked when a job is submitted.

A job asking for what no executor offers is refused at once, with one line naming the limit,
instead of being run differently from what it asked (executors lower a job's memory to their
own maximum, with a note only in their log) or waiting forever:

- ``resources.gpu``: no executor runs GPU jobs (containers get no devices), so any GPU is
  refused (``UnsupportedError``).
- ``resources.memory`` above ``SHOAL_MAX_JOB_MEMORY``. Executors do not announce their sizes,
  so the operator states the cluster's largest job here; the default is the executors' default
  maximum (``SHOAL_MAX_MEMORY``, 4 GiB). Refusing at submission was chosen over a note in
  ``job describe``: the user learns it before anything ran, and a job that needs the memory
  never runs out of it halfway. An executor smaller than this still lowers a job to its own
  maximum, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.errors import UnsupportedError
from shoal.model import Job
from shoal.units import format_bytes

DEFAULT_MAX_JOB_MEMORY = 4 * 1024**3


@dataclass(frozen=True)
class Admission:
    """The cluster's limits on what a job may ask for."""

    max_memory: int = DEFAULT_MAX_JOB_MEMORY

    def check(self, job: Job) -> None:
        """``UnsupportedError`` when ``job`` asks for GPUs or more memory than allowed."""
        resources = job.task.resources
        if resources.gpu:
            raise UnsupportedError(
                f"the job asks for {resources.gpu} GPU(s); no executor here runs GPU jobs "
                "(remove resources.gpu)"
            )
        if resources.memory is not None and resources.memory > self.max_memory:
            raise UnsupportedError(
                f"the job asks for {format_bytes(resources.memory)} of memory; executors give a "
                f"job at most {format_bytes(self.max_memory)} (SHOAL_MAX_JOB_MEMORY)"
            )


DEFAULT_ADMISSION = Admission()
"""The default limits (tests and tools that build a pipeline without settings)."""
