"""Compiled modules, cached per executor: a module is compiled once, then deserialized.

Keyed by the sha256 of the module's bytes; the cache holds wasmtime's serialization of the
compiled code (``Module.serialize``), which any engine made with the same configuration
(``engine_config``) loads without compiling again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import wasmtime

CACHED_MODULES = 32
"""Compiled modules kept (least recently used dropped first)."""


def engine_config() -> wasmtime.Config:
    """The configuration of every wasmtime engine of the executor: epoch interruption on
    (a job is stopped by advancing its engine's epoch)."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    return config


class ModuleCache:
    """sha256 of a module → its compiled code, shared by the executor's jobs (thread-safe)."""

    def __init__(self, keep: int = CACHED_MODULES) -> None:
        self._keep = keep
        self._compiled: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
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
