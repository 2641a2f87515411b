"""Benchmark the python image's prebuilt environments; prints a Markdown section.

A job with one dependency (``tinydep``, a wheel made here and served from a local index on the
docker bridge) runs the way the executor runs it
(``executor/engines/docker/depcache.py``): cold, the install
step (``shoal-launch --install`` with the plan) builds a fresh volume, the completion marker is
written into it, then the job runs with it mounted read-only at ``/shoal-env``; warm, the job
runs on that volume at once; the same job without dependencies is the baseline. Containers use
the executor's settings (read-only root, tmpfs /tmp, no capabilities, uid 1000). Timed:
``docker start -a`` of the install step and of the job (create/copy/remove are the same for
every variant and left out).

Usage: python bench/bench_depcache.py [--runs N] [--image shoal/python:3.11-r3]
Needs Docker and the runtime images (``bash runtime-images/build.sh``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from shoal.images import DEFAULT_PYTHON_VERSION, python_image

PLAN = {
    "rule": "requirements",
    "installs": [["pip", "install", "-r", "requirements.txt"]],
    "files": {"requirements.txt": "tinydep==1.0\n"},
}
APP = "try:\n    import tinydep\nexcept ImportError:\n    pass\nprint('ok')\n"
TINYDEP = {
    "tinydep/__init__.py": 'VALUE = "tinydep-1.0"\n',
    "tinydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
    "tinydep-1.0.dist-info/WHEEL": (
        "Wheel-Version: 1.0\nGenerator: shoal-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ),
}


def docker(*args: str, timeout: float = 120) -> str:
    """Run the docker CLI; return its stdout."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout


def write_wheel(dest: Path) -> None:
    """The one-module wheel ``tinydep`` 1.0, with its RECORD."""
    record = ""
    for name, text in TINYDEP.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record += f"{name},sha256={digest.decode()},{len(text.encode())}\n"
    record += "tinydep-1.0.dist-info/RECORD,,\n"
    dest.mkdir(parents=True)
    with zipfile.ZipFile(dest / "tinydep-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in {**TINYDEP, "tinydep-1.0.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""


@contextmanager
def serve(root: Path, host: str) -> Iterator[str]:
    """Serve ``root`` over HTTP on ``host``; yield the base URL."""
    server = ThreadingHTTPServer((host, 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def timed_run(image: str, code: Path, env: Sequence[str], mount: str, argv: Sequence[str],
              marker: Path | None = None) -> float:  # fmt: skip
    """Create a container, copy ``code`` in, time ``docker start -a``, remove it.

    ``mount``: the volume option for ``/shoal-env``; ``marker``: copied into it after exit.
    """
    cid = docker(
        "create", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--user", "1000",
        "-v", "/code", "-v", "/outputs", *(["-v", mount] if mount else []),
        *env, image, *argv,
    ).strip()  # fmt: skip
    try:
        docker("cp", f"{code}/.", f"{cid}:/code")
        start = time.perf_counter()
        out = docker("start", "-a", cid, timeout=300)
        elapsed = time.perf_counter() - start
        if argv[0] == "--" and out.strip() != "ok":
            raise RuntimeError(f"job failed: {out!r}")
        if marker is not None:
            docker("cp", str(marker), f"{cid}:/shoal-env/.shoal-complete")
        return elapsed
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", cid], capture_output=True, check=False)


JOB = ("--", "python", "app.py")


def cold_then_warm(image: str, root: Path, env: Sequence[str]) -> tuple[float, float]:
    """The install step and the first job on a fresh volume, then a second job on it."""
    volume = f"shoal-bench-{uuid.uuid4().hex[:12]}"
    docker("volume", "create", volume)
    try:
        install = timed_run(image, root / "plan", env, f"{volume}:/shoal-env", ["--install"],
                            marker=root / "marker")  # fmt: skip
        ro = f"{volume}:/shoal-env:ro"
        cold = install + timed_run(image, root / "deps", env, ro, JOB)
        return cold, timed_run(image, root / "deps", env, ro, JOB)
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)


def measure(image: str, runs: int) -> dict[str, list[float]]:
    """Cold, warm and no-dependency timings, interleaved, ``runs`` times each."""
    times: dict[str, list[float]] = {"no dependencies": [], "cold: install step + job": [],
                                     "warm: prebuilt env": []}  # fmt: skip
    config = json.loads(docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}"))
    gateway = config[0].get("Gateway") or str(next(ip_network(config[0]["Subnet"]).hosts()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_wheel(root / "index" / "simple" / "tinydep")
        (root / "deps").mkdir()
        (root / "deps" / "app.py").write_text(APP)
        (root / "deps" / "requirements.txt").write_text("tinydep==1.0\n")
        (root / "plan").mkdir()
        (root / "plan" / "plan.json").write_text(json.dumps(PLAN))
        (root / "marker").write_text("bench\n")
        (root / "nodeps").mkdir()
        (root / "nodeps" / "app.py").write_text(APP)
        with serve(root / "index", gateway) as url:
            env = ["-e", f"PIP_INDEX_URL={url}/simple/", "-e", f"PIP_TRUSTED_HOST={gateway}"]
            for _ in range(runs):
                cold, warm = cold_then_warm(image, root, env)
                times["cold: install step + job"].append(cold)
                times["warm: prebuilt env"].append(warm)
                times["no dependencies"].append(timed_run(image, root / "nodeps", env, "", JOB))
    return times


def report(image: str, runs: int, times: dict[str, list[float]]) -> str:
    """The Markdown section."""
    base = statistics.median(times["no dependencies"])
    lines = [
        "## Dependency cache (python runtime image, prebuilt environments)",
        "",
        f"`{image}`, one dependency from a local index, {runs} runs each, interleaved; "
        "time of `docker start -a` (container start, launcher, job, exit), plus the install "
        "step's for the cold run.",
        "",
        "| job | median (s) | min (s) | max (s) | x no deps |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median:.3f} | {min(values):.3f} | {max(values):.3f} "
            f"| {median / base:.2f} |"
        )
    warm = statistics.median(times["warm: prebuilt env"]) / base
    verdict = "meets" if warm <= 1.2 else "MISSES"
    lines += ["", f"Warm / no dependencies: **{warm:.2f}x** ({verdict} the <= 1.2x target)."]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default=python_image(DEFAULT_PYTHON_VERSION))
    args = parser.parse_args()
    print(report(args.image, args.runs, measure(args.image, args.runs)))


if __name__ == "__main__":
    main()
