"""No network for wasm jobs: a module that tries to use a socket ends with that reason.

WASI preview1 has no call that opens a socket, and wasmtime preopens none, so a module can
only reach a network through functions other runtimes add (``sock_open``, ``sock_connect``,
...): a module importing one is refused before it starts (wasmtime would only say that the
import is undefined). Preview1's own socket calls (``sock_accept``, ``sock_recv``,
``sock_send``, ``sock_shutdown``) can only meet descriptors that are no sockets; the engine
replaces them with functions that trap the module at the call (wasmtime's would return an
error code that the module may report any way, or not at all).
"""

from __future__ import annotations

from collections.abc import Callable

import wasmtime

from shoal.executor import failures
from shoal.executor.failures import JobError

WASI = "wasi_snapshot_preview1"
CALLS = ("sock_accept", "sock_recv", "sock_send", "sock_shutdown")
"""The socket functions of WASI preview1 (each traps the module here)."""
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


class SocketCalls:
    """Preview1's socket functions for one run: each traps the module and is remembered."""

    def __init__(self) -> None:
        self.called: str | None = None
        """The first socket function the module called."""

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        """Replace ``linker``'s WASI socket functions (defined already) with trapping ones."""
        linker.allow_shadowing = True
        for name in CALLS:
            defined = linker.get(store, WASI, name)
            assert isinstance(defined, wasmtime.Func)
            linker.define_func(WASI, name, defined.type(store), self._refuse(name))
        linker.allow_shadowing = False

    def _refuse(self, name: str) -> Callable[..., int]:
        def refuse(*_: int) -> int:
            self.called = self.called or name
            raise wasmtime.Trap(f"{name}: {NO_NETWORK}")

        return refuse

    @property
    def error(self) -> str | None:
        """The job's error once the module called a socket function."""
        if self.called is None:
            return None
        return f"{failures.NETWORK_NOT_ALLOWED}: {NO_NETWORK}: the module called {self.called}"
