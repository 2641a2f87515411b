"""Helpers for the runtime-image tests: hand-made wheels, a local index, docker job runs."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import ipaddress
import json
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "runtime-images" / "python" / "launcher.py"
BUILD_SCRIPT = REPO / "runtime-images" / "build.sh"


def load_launcher() -> ModuleType:
    """Import ``runtime-images/python/launcher.py`` by path (it is not a package)."""
    spec = importlib.util.spec_from_file_location("shoal_launcher", LAUNCHER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(
    dest: Path,
    name: str,
    version: str,
    module_source: str,
    scripts: Mapping[str, str] | None = None,
    requires: Sequence[str] = (),
) -> Path:
    """Write a pure-python wheel of one module package ``name``; ``scripts``: console scripts;
    ``requires``: its requirements."""
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files: dict[str, str] = {
        f"{name}/__init__.py": module_source,
        f"{dist}/METADATA": metadata + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: shoal-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files[f"{dist}/entry_points.txt"] = f"[console_scripts]\n{lines}"
    record = "".join(
        f"{p},{_record_hash(t.encode())},{len(t.encode())}\n" for p, t in files.items()
    )
    files[f"{dist}/RECORD"] = record + f"{dist}/RECORD,,\n"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for arcname, text in files.items():
            wheel.writestr(arcname, text)
    return path


TINYDEP_SOURCE = """VALUE = "tinydep-1.0"


def hello() -> None:
    import sys
    print("hello from tinydep", *sys.argv[1:])
"""


def make_tinydep(dest: Path) -> Path:
    """The test dependency: module ``tinydep`` with a ``tinydep-hello`` console script."""
    return make_wheel(dest, "tinydep", "1.0", TINYDEP_SOURCE, {"tinydep-hello": "tinydep:hello"})


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@contextmanager
def serve_directory(root: Path, host: str) -> Iterator[str]:
    """Serve ``root`` over HTTP on ``host`` (any free port); yield its base URL."""
    server = ThreadingHTTPServer((host, 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI and capture its output."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def bridge_gateway() -> str:
    """The default bridge's gateway: the host address containers reach.

    The engine may report only the subnet; the gateway is then its first address.
    """
    out = docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}")
    config = json.loads(out.stdout)[0]
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@dataclass
class JobResult:
    """What a finished job container left: exit code, streams, files under /outputs."""

    code: int
    stdout: str
    stderr: str
    outputs: dict[str, bytes] = field(default_factory=dict)

    def log(self) -> str:
        """The dependency log of the job."""
        return self.outputs.get("requirements.log", b"").decode()


def _write_tree(root: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)


def _read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_job(
    image: str,
    argv: Sequence[str],
    *,
    code: Mapping[str, str | bytes] | None = None,
    inputs: Mapping[str, str | bytes] | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> JobResult:
    """Run a job the way the executor does: read-only root, no capabilities, uid 1000, files
    copied into anonymous ``/code`` (and ``/inputs``) volumes before start, ``/outputs`` read
    back after exit; ``volumes``: named volume → ``target[:ro]``."""
    create = [
        "create",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        "1000",
        "--pids-limit",
        "256",
        "-v",
        "/outputs",
    ]
    if code is not None:
        create += ["-v", "/code"]
    if inputs is not None:
        create += ["-v", "/inputs"]
    for name, target in (volumes or {}).items():
        create += ["-v", f"{name}:{target}"]
    for key, value in (env or {}).items():
        create += ["-e", f"{key}={value}"]
    cid = docker(*create, image, *argv).stdout.strip()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for target, files in (("/code", code), ("/inputs", inputs)):
                if files:
                    src = Path(tmp, target.strip("/"))
                    src.mkdir()
                    _write_tree(src, files)
                    docker("cp", f"{src}/.", f"{cid}:{target}")
            run = docker("start", "-a", cid, timeout=timeout, check=False)
            out = Path(tmp, "outputs")
            docker("cp", f"{cid}:/outputs/.", str(out))
            return JobResult(run.returncode, run.stdout, run.stderr, _read_tree(out))
    finally:
        docker("rm", "-f", "-v", cid, check=False)
