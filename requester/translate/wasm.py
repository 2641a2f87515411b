"""``wasm`` jobs: a WASI module run as is by the executors' wasm engine.

``shoal exec wasm --code module.wasm -- ARGS…`` runs the ``--code`` file; with a ``--code``
folder, ``--module NAME.wasm`` names the module in it. ARGS are its argv after its own name.
``wasm`` is also a native engine: a task already in the engine's form (``module``,
``parameters``, ``env``, no ``command``) is not translated (``translate_job``).
"""

from __future__ import annotations

import posixpath

from shoal.errors import TranslationError
from shoal.model import NetworkType, SpecConfig, Task, WasmParams

from .base import argv_param

CODE_ROOT = "/code"


class WasmTranslator:
    """``wasm`` → the wasm engine, the module under ``/code``."""

    job_type = "wasm"
    engine = "wasm"

    def translate(self, task: Task) -> Task:
        """The module's path under ``/code`` and its argv, as the engine's params."""
        if task.network is not None and task.network.type is not NetworkType.NONE:
            raise TranslationError(
                "wasm jobs have no network (WASI gives none); leave out --network, or run a "
                "docker job type"
            )
        argv = argv_param(task, self.job_type)
        params = WasmParams(module=self._module(task), parameters=argv)
        return task.model_copy(
            update={"engine": SpecConfig(type="wasm", params=params.model_dump(exclude_none=True))}
        )

    @staticmethod
    def _module(task: Task) -> str:
        name = str(task.engine.params.get("module") or "")
        code = next((item for item in task.inputs if item.alias == "code"), None)
        if name:
            path = posixpath.normpath(posixpath.join(CODE_ROOT, name))
            if not path.startswith(CODE_ROOT + "/"):
                raise TranslationError(f"--module {name}: give a path inside the --code folder")
            return path
        if code is None:
            raise TranslationError(
                "wasm job has no module: give it with --code module.wasm (or --code DIR "
                "--module NAME.wasm)"
            )
        if posixpath.normpath(code.target) == CODE_ROOT:
            raise TranslationError(
                "wasm job: --code is a folder; name the module in it with --module NAME.wasm"
            )
        return posixpath.normpath(code.target)
