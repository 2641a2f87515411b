;; A WASI module for `shoal exec wasm` (make demo compiles it with wasmtime.wat2wasm):
;; prints a greeting and writes it to /outputs/hello.txt too.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from WebAssembly\n")
  (data (i32.const 96) "hello.txt")
  (func $write (param $fd i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 23))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $write (i32.const 1))
    ;; the preopened folders are fds 3 /code, 4 /inputs, 5 /outputs, 6 /tmp
    (if (call $path_open (i32.const 5) (i32.const 0) (i32.const 96) (i32.const 9)
          (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0)
          (i32.const 12))
      (then unreachable))
    (call $write (i32.load (i32.const 12)))))
