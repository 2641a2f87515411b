"""The WebAssembly engine: WASI modules in-process with wasmtime (``engine.WasmEngine``)."""
