"""``shoal.exec_job``: the job ``shoal exec TYPE …`` builds, from Python values.

Both go through :func:`shoal.client.prepare.prepare_job`, so the same arguments make the same job
(apart from its fresh ID and creation time) and meet the same ``UsageError`` subclasses.

Example::

    import shoal

    job = shoal.exec_job(
        "python", ["python", "app.py", "/inputs/data.csv"],
        code="app.py", inputs=["data.csv"], env={"MODE": "fast"}, timeout=600,
    )
    # the job of: shoal exec python --code app.py -i data.csv -e MODE=fast --timeout 600 \\
    #                 -- python app.py /inputs/data.csv
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from shoal.model import Job

from .prepare import ExecOptions, prepare_job
from .settings import ClientSettings


def _text(value: str | float | None) -> str | None:
    return None if value is None else str(value)


def exec_job(
    job_type: str,
    argv: Sequence[str] = (),
    *,
    code: str | os.PathLike[str] | None = None,
    inputs: Iterable[str] = (),
    outputs: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
    name: str | None = None,
    timeout: str | float | None = None,
    queue_timeout: str | float | None = None,
    grace: str | float | None = None,
    cpu: str | float | None = None,
    memory: str | int | None = None,
    network: str | None = None,
    domains: Iterable[str] = (),
    retries: int | None = None,
    retry_on: Iterable[str] | None = None,
    retry_backoff: str | float | None = None,
    template_dirs: Iterable[Path] | None = None,
) -> Job:
    """The job that ``shoal exec JOB_TYPE [flags] -- ARGV…`` submits.

    ``argv`` is the program's command line, kept as given (no shell). ``code`` is a file
    (at ``/code/<its name>``) or a folder (at ``/code``); each of ``inputs`` is written as
    for ``-i`` (a local path, ``http(s)://`` URL or ``file://`` path, optionally
    ``src=…,dst=/inputs/NAME``); ``outputs`` maps names to folders as ``-o NAME:PATH``;
    ``variables`` are the job type's template variables (``{"version": "3.11"}``).
    Durations are seconds or text such as ``90s``, ``5m``; ``memory`` bytes or ``512Mi``.
    ``template_dirs`` defaults to ``SHOAL_TEMPLATE_DIRS``. Raises ``UsageError``
    subclasses (``UnknownJobTypeError``, ``CodeArchiveError``, ``TooLargeError``, …).

    Example::

        job = shoal.exec_job("python", ["python", "-c", "print(1)"], variables={"version": "3.11"})
    """
    options = ExecOptions(
        job_type=job_type,
        arguments=list(argv),
        variables=dict(variables or {}),
        code=None if code is None else os.fspath(code),
        inputs=list(inputs),
        outputs=[f"{key}:{path}" for key, path in (outputs or {}).items()],
        env=[f"{key}={value}" for key, value in (env or {}).items()],
        labels=[f"{key}={value}" for key, value in (labels or {}).items()],
        timeout=_text(timeout),
        queue_timeout=_text(queue_timeout),
        grace=_text(grace),
        cpu=_text(cpu),
        memory=_text(memory),
        network=network,
        domains=list(domains),
        name=name,
        retries=_text(retries),
        retry_on=None if retry_on is None else ",".join(retry_on),
        retry_backoff=_text(retry_backoff),
    )
    dirs = ClientSettings.from_env().template_dirs if template_dirs is None else template_dirs
    return prepare_job(options, dirs)
