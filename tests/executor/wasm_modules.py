"""Small WASI modules for the tests, written in WAT and compiled with ``wasmtime.wat2wasm``.

Preopened folders get file descriptors in the engine's order: 3 ``/code``, 4 ``/inputs``,
5 ``/outputs``, 6 ``/tmp``.
"""

from __future__ import annotations

from typing import Any

import wasmtime

from shoal.model import Job

from .support import inline_input

_IMPORTS = """
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $open (param $dir i32) (param $ptr i32) (param $len i32) (param $oflags i32)
    (result i32)
    (call $path_open (local.get $dir) (i32.const 0) (local.get $ptr) (local.get $len)
      (local.get $oflags) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0)
      (i32.const 12)))
"""

GREETS = f"""(module {_IMPORTS}
  (data (i32.const 16) "hello\\n")
  (data (i32.const 32) "oops\\n")
  (data (i32.const 48) "done\\n")
  (data (i32.const 64) "out.txt")
  (func (export "_start")
    (call $write (i32.const 1) (i32.const 16) (i32.const 6))
    (call $write (i32.const 2) (i32.const 32) (i32.const 5))
    (if (call $open (i32.const 5) (i32.const 64) (i32.const 7) (i32.const 1))
      (then (call $proc_exit (i32.const 99))))
    (call $write (i32.load (i32.const 12)) (i32.const 48) (i32.const 5))
    (call $proc_exit (i32.const 3))))
"""
"""Writes ``hello`` to stdout, ``oops`` to stderr, ``done`` to /outputs/out.txt; exits 3."""

SPINS = """(module
  (func (export "_start") (loop $forever (br $forever))))
"""
"""Runs until it is killed."""

ESCAPES = f"""(module {_IMPORTS}
  (data (i32.const 16) "../etc/passwd")
  (data (i32.const 32) "cannot open ../etc/passwd\\n")
  (data (i32.const 64) "read it\\n")
  (func (export "_start")
    (if (call $open (i32.const 3) (i32.const 16) (i32.const 13) (i32.const 0))
      (then
        (call $write (i32.const 2) (i32.const 32) (i32.const 26))
        (call $proc_exit (i32.const 2))))
    (call $write (i32.const 1) (i32.const 64) (i32.const 8))))
"""
"""Tries to open ``/code/../etc/passwd``: exits 2 with an error line when it cannot."""

GREEDY = """(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
"""
"""Grows its memory a MiB at a time until refused, then traps."""

ACCEPTS = """(module
  (import "wasi_snapshot_preview1" "sock_accept"
    (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $proc_exit (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 16)))))
"""
"""Accepts a connection on descriptor 3 (``/code``, no socket); exits with the errno."""

OPENS_SOCKET = """(module
  (import "wasi_snapshot_preview1" "sock_open"
    (func $sock_open (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $proc_exit (call $sock_open (i32.const 1) (i32.const 1) (i32.const 16)))))
"""
"""Opens a TCP socket with ``sock_open`` (an extension of other runtimes, not WASI's)."""


def wasm(wat: str) -> bytes:
    """``wat`` compiled to a module."""
    return bytes(wasmtime.wat2wasm(wat))


def wasm_job(wat: str, *, parameters: list[str] | None = None, **task: Any) -> Job:
    """A wasm job running ``wat``, placed at ``/code/module.wasm``."""
    code = inline_input("file", {"module.wasm": wasm(wat)}, "/code/module.wasm")
    params = {"module": "/code/module.wasm", "parameters": parameters or []}
    return Job.model_validate(
        {
            "tasks": [
                {
                    "engine": {"type": "wasm", "params": params},
                    "inputs": [code, *task.pop("inputs", [])],
                    **task,
                }
            ]
        }
    )
