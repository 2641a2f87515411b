"""Shoal: a queue-driven batch system that runs code, not containers.

This package holds what every process shares: the job model, wire messages and queue
topology, settings, logging set-up and errors. It is also the public Python API, loaded
on first use so that ``import shoal`` stays cheap:

- :class:`Client` (blocking) and :class:`AsyncClient` (asyncio): submit jobs one by one or
  many at once, wait for them, read their logs, fetch their outputs, stop them;
- :func:`exec_job`: the job that ``shoal exec TYPE …`` builds;
- :mod:`shoal.errors`: the typed exceptions they raise.

Example::

    import shoal

    with shoal.Client() as client:
        submitted = client.submit(shoal.exec_job("python", ["python", "-c", "print(42)"]))
        client.wait(submitted.job_id, timeout=300)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.client.api import AsyncClient, Outputs, Submitted
    from shoal.client.exec_job import exec_job
    from shoal.client.follow import LogChunk
    from shoal.client.sync_api import Client

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "LogChunk",
    "Outputs",
    "Submitted",
    "__version__",
    "exec_job",
]

_LAZY = {
    "AsyncClient": "shoal.client.api",
    "Outputs": "shoal.client.api",
    "Submitted": "shoal.client.api",
    "Client": "shoal.client.sync_api",
    "LogChunk": "shoal.client.follow",
    "exec_job": "shoal.client.exec_job",
}
"""Where each name of the API lives (``client/`` imports ``shoal``, so it is loaded late)."""


if not TYPE_CHECKING:  # mypy sees the imports above, so a misspelt name is still an error

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'shoal' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
