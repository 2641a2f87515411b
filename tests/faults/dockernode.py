"""A Docker engine of the test's own, which a test may stop and start while jobs run.

It runs in a network namespace of its own (``ip netns add``; entered with ``nsenter --net``,
which, unlike ``ip netns exec``, keeps the host's mounts and so its cgroups), with
``--bridge=none --iptables=false``, its own data root, exec root, pid file and socket: it
never touches the shared engine, ``docker0`` or the host's firewall. Its image store starts
empty; the test base image is loaded into it from the shared engine. :func:`private_docker`
stops it and removes everything at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.executor.support import BASE_IMAGE


@dataclass
class DockerNode:
    """One private engine: its socket URL, start and stop."""

    folder: Path
    namespace: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.folder / 'docker.sock'}"

    def _answers(self) -> bool:
        done = subprocess.run(
            ["docker", "-H", self.url, "version"], capture_output=True, timeout=30, check=False
        )
        return done.returncode == 0

    def start(self, within: float = 90) -> None:
        """Start the engine and wait until it answers."""
        f = self.folder
        command = [
            "nsenter", f"--net=/run/netns/{self.namespace}", "dockerd",
            "--data-root", str(f / "data"), "--exec-root", str(f / "exec"),
            "--pidfile", str(f / "dockerd.pid"), "-H", self.url,
            "--bridge=none", "--iptables=false", "--ip6tables=false",
        ]  # fmt: skip
        with (f / "dockerd.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        end = time.monotonic() + within
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > end:
                tail = (f / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"private dockerd did not start:\n{tail}")
            time.sleep(0.5)

    def stop(self, within: float = 60) -> None:
        """SIGTERM the engine (its containers die with it) and wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)

    def load_base_image(self) -> None:
        """Copy the test base image from the shared engine into this one."""
        with subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE) as save:
            subprocess.run(
                ["docker", "-H", self.url, "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                timeout=300,
                check=True,
            )
        if save.returncode != 0:
            raise RuntimeError(f"docker save {BASE_IMAGE} failed")


def _unmount_under(folder: Path) -> None:
    """Lazily unmount anything a stopped engine left mounted under ``folder``."""
    mounts = Path("/proc/mounts").read_text().splitlines()
    for point in sorted((line.split()[1] for line in mounts), reverse=True):
        if point.startswith(f"{folder}/"):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@contextlib.contextmanager
def private_docker() -> Iterator[DockerNode]:
    """A started private engine with the base image loaded; removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="shoal-dockerd-"))
    os.chmod(folder, 0o711)
    namespace = f"shoalfaults-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
    node = DockerNode(folder, namespace)
    try:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True
        )
        node.start()
        node.load_base_image()
        yield node
    finally:
        node.stop()
        _unmount_under(folder)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)
