"""``python`` jobs: the user's argv run by the python runtime image's launcher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from shoal.errors import TranslationError
from shoal.images import DEFAULT_PYTHON_VERSION, LAUNCHER_PATH, PYTHON_VERSIONS, python_image
from shoal.model import DockerParams, Network, NetworkType, SpecConfig, Task

from .base import argv_param

PACKAGE_INDEX_DOMAINS = ("pypi.org", "files.pythonhosted.org")
"""Where a python job may reach by default: enough to install its dependencies."""


def job_network(network: Network | None) -> Network:
    """The job's network: http to the package indexes by default; ``--domain`` (an http
    network's domains) adds to them, so dependencies still install; ``none`` and ``full``
    are kept as chosen."""
    if network is None:
        return Network(type=NetworkType.HTTP, domains=list(PACKAGE_INDEX_DOMAINS))
    if network.type is not NetworkType.HTTP:
        return network
    domains = list(dict.fromkeys([*PACKAGE_INDEX_DOMAINS, *network.domains]))
    return network.model_copy(update={"domains": domains})


class PythonTranslator:
    """``python`` → docker on ``shoal/python:<version>``."""

    job_type = "python"
    engine = "docker"
    choices: ClassVar[Mapping[str, Sequence[str]]] = {"version": PYTHON_VERSIONS}

    def translate(self, task: Task) -> Task:
        """Run ``shoal-launch -- ARGV`` in the image for the job's python version."""
        argv = argv_param(task, self.job_type)
        if not argv:
            raise TranslationError(
                "python job has nothing to run: give the command after --, "
                "e.g. shoal exec python --code app.py -- python app.py"
            )
        version = str(task.engine.params.get("version") or DEFAULT_PYTHON_VERSION)
        if version not in PYTHON_VERSIONS:
            raise TranslationError(
                f"python version {version!r} is not supported; supported versions: "
                + ", ".join(PYTHON_VERSIONS)
                + " (those with a runtime image)"
            )
        params = DockerParams(
            image=python_image(version),
            entrypoint=[LAUNCHER_PATH],
            parameters=["--", *argv],
            dep_cache=True,
        )
        return task.model_copy(
            update={
                "engine": SpecConfig(type="docker", params=params.model_dump()),
                "network": job_network(task.network),
            }
        )
