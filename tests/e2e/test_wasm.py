"""``shoal exec wasm``: a WASI module through the whole system, on the wasm engine's queue."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

COUNTS_ITS_ARGS = """(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "args: ?\\n")
  (data (i32.const 96) "summary.txt")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (i32.store8 (i32.const 70) (i32.add (i32.load (i32.const 16)) (i32.const 48)))
    (call $write (i32.const 1) (i32.const 64) (i32.const 8))
    (if (call $path_open (i32.const 5) (i32.const 0) (i32.const 96) (i32.const 11)
          (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0)
          (i32.const 12))
      (then unreachable))
    (call $write (i32.load (i32.const 12)) (i32.const 64) (i32.const 8))))
"""
"""Prints ``args: N`` (its argc) and writes the same line to /outputs/summary.txt."""


async def test_exec_wasm_runs_the_module_and_keeps_its_outputs(
    system: System, tmp_path: Path
) -> None:
    module = tmp_path / "count.wasm"
    module.write_bytes(bytes(wasmtime.wat2wasm(COUNTS_ITS_ARGS)))
    done = await system.shoal(
        "exec", "wasm", "--code", str(module), "--id-only", "--wait", "--", "one", "two"
    )  # fmt: skip
    assert done.code == 0, done.err
    job_id = done.out.strip()
    logs = await system.shoal("job", "logs", job_id)
    assert logs.out == "args: 3\n"
    got = await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path / "o"))
    assert got.code == 0, got.err
    assert (tmp_path / "o" / "outputs" / "summary.txt").read_text() == "args: 3\n"


async def test_exec_wasm_with_a_network_is_refused(system: System, tmp_path: Path) -> None:
    module = tmp_path / "count.wasm"
    module.write_bytes(bytes(wasmtime.wat2wasm(COUNTS_ITS_ARGS)))
    done = await system.shoal(
        "exec", "wasm", "--code", str(module), "--network", "full", "--", "x"
    )  # fmt: skip
    assert done.code == 2
    assert done.err.startswith("TranslationError: wasm jobs have no network")
