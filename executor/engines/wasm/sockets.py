"""No network for wasm jobs: a module that tries to open a socket is refused.

WASI preview1 has no call that opens a socket, and wasmtime preopens none, so a module can
only reach a network through functions other runtimes add (``sock_open``, ``sock_connect``,
...): a module importing one is refused before it starts (wasmtime would only say that the
import is undefined). Preview1's own socket calls (``sock_accept``, ``sock_recv``,
``sock_send``, ``sock_shutdown``) can only meet descriptors that are no sockets, and
wasmtime answers them with an error code (``ENOTSOCK``, ``EBADF``). They are not replaced
with functions that trap: a Python host function per run, made in the engine's threads,
broke wasmtime's bindings after a few hundred runs (``TypeError`` in every later job).
"""

from __future__ import annotations

import wasmtime

from shoal.executor import failures
from shoal.executor.failures import JobError

WASI = "wasi_snapshot_preview1"
CALLS = ("sock_accept", "sock_recv", "sock_send", "sock_shutdown")
"""The socket functions of WASI preview1 (answered with an error code by wasmtime)."""
NO_NETWORK = "wasm jobs have no network (WASI gives none)"


def refuse_imports(module: wasmtime.Module) -> None:
    """``JobError(NETWORK_NOT_ALLOWED)`` when ``module`` imports a WASI socket function
    that preview1 does not define."""
    for item in module.imports:
        name = item.name or ""
        if item.module.startswith("wasi") and name.startswith("sock_") and name not in CALLS:
            raise JobError(
                failures.NETWORK_NOT_ALLOWED,
                f"{NO_NETWORK}: the module imports {item.module}::{name}",
            )
