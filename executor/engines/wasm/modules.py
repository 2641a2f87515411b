"""Compiled modules, cached per executor: a module is compiled once, then deserialized.

A job's module is keyed by the sha256 of its bytes; the cache holds wasmtime's serialization
of the compiled code (``Module.serialize``), which any engine made with the same
configuration (``engine_config``) loads without compiling again. A module the executor's
packages ship (an interpreter such as the python runtime's, ~100 MB, minutes to compile) is
compiled into a file of the node's ``COMPILED_DIR`` instead, named after the sha256 of its
bytes and the wasmtime version, kept across executor restarts and reinstalls of the same
package, and mapped from there by each job (``load_file``). ``python -m
shoal.executor.engines.wasm.modules`` compiles the python runtime into it ahead of the first job
(a node's set-up, as building the runtime images is for Docker).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from importlib.metadata import version
from pathlib import Path

import wasmtime

CACHED_MODULES = 32
"""Compiled modules kept (least recently used dropped first)."""
COMPILED_DIR = Path(tempfile.gettempdir()) / f"shoal-compiled-wasm-{os.getuid()}"
"""Where compiled shipped modules are kept: this user's own folder (0700), since a compiled
module is native code that wasmtime runs as it finds it."""


def engine_config() -> wasmtime.Config:
    """The configuration of every wasmtime engine of the executor: epoch interruption on
    (a job is stopped by advancing its engine's epoch), and exception handling (which the
    python runtime's CPython uses)."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.wasm_exceptions = True
    return config


class ModuleCache:
    """sha256 of a module → its compiled code, shared by the executor's jobs (thread-safe)."""

    def __init__(self, keep: int = CACHED_MODULES, folder: Path = COMPILED_DIR) -> None:
        self._keep = keep
        self._folder = folder
        self._compiled: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._digests: dict[tuple[str, int, int], str] = {}
        """(path, size, mtime) of a shipped module → the sha256 of its bytes."""
        self.compiles = 0
        """Modules compiled so far (the others were found in the cache)."""

    def load(self, engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
        """``wasm`` compiled for ``engine``; ``wasmtime.WasmtimeError`` when it is not a
        valid module."""
        key = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            blob = self._compiled.get(key)
            if blob is not None:
                self._compiled.move_to_end(key)
        if blob is None:
            blob = bytes(wasmtime.Module(engine, wasm).serialize())
            with self._lock:
                self.compiles += 1
                self._compiled[key] = blob
                while len(self._compiled) > self._keep:
                    self._compiled.popitem(last=False)
        return wasmtime.Module.deserialize(engine, blob)

    def load_file(self, engine: wasmtime.Engine, path: Path) -> wasmtime.Module:
        """The module at ``path`` (a file the executor's packages ship, never a job's),
        compiled once into the cache folder and mapped from it by every later job."""
        with self._file_lock:
            compiled = self._folder / f"{self._digest(path)}-{version('wasmtime')}.cwasm"
            self._folder.mkdir(mode=0o700, exist_ok=True)
            owned = self._folder.lstat()
            if owned.st_uid != os.getuid() or owned.st_mode & 0o077:
                raise PermissionError(f"{self._folder} is not this user's own folder (0700)")
            if not compiled.is_file():
                self._compile_into(engine, path, compiled)
        return wasmtime.Module.deserialize_file(engine, str(compiled))

    def _digest(self, path: Path) -> str:
        """The sha256 of the file at ``path`` (read once while it stays the same file)."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            self._digests[key] = digest.hexdigest()
        return self._digests[key]

    def _compile_into(self, engine: wasmtime.Engine, path: Path, compiled: Path) -> None:
        blob = wasmtime.Module.from_file(engine, str(path)).serialize()
        partial = compiled.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(blob)
        partial.replace(compiled)
        self.compiles += 1


def main() -> None:
    """Compile the python runtime (when installed) into ``COMPILED_DIR``, saying how long."""
    import time

    from shoal.executor.engines.wasm.python import find_python

    runtime = find_python()
    if runtime is None:
        print("no python runtime for wasm here (shoal[wasm-python] not installed): nothing to do")
        return
    began = time.monotonic()
    cache = ModuleCache()
    cache.load_file(wasmtime.Engine(engine_config()), runtime.module)
    done = "compiled" if cache.compiles else "already compiled"
    print(f"python runtime for wasm {done} in {COMPILED_DIR} ({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
