"""A RabbitMQ node of the test's own, beside the system one, that a test may stop and start.

The node runs as the ``rabbitmq`` user (the system node's Erlang cookie, so ``rabbitmqctl -n``
reaches it) from a folder of its own: its name, AMQP and distribution ports, database, logs,
pid file and (empty) plugin list are all private, so restarting it never touches the shared
broker. :func:`private_rabbit` stops it and removes its folder at the end;
:func:`private_cluster` clusters several such nodes (never with the system node).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CONFIG = """listeners.tcp.local = 127.0.0.1:{port}
consumer_timeout = 90000000
max_message_size = 67108864
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RabbitNode:
    """One private node: start, stop, and its AMQP URL."""

    folder: Path
    name: str
    port: int
    dist_port: int

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def start(self, within: float = 120) -> None:
        """Start the node and wait until it takes AMQP connections."""
        f = self.folder
        env = [
            "HOME=/var/lib/rabbitmq",
            f"RABBITMQ_CONF_ENV_FILE={f / 'env.conf'}",
            f"RABBITMQ_NODENAME={self.name}",
            f"RABBITMQ_CONFIG_FILE={f / 'rabbitmq.conf'}",
            f"RABBITMQ_DIST_PORT={self.dist_port}",
            f"RABBITMQ_MNESIA_BASE={f / 'mnesia'}",
            f"RABBITMQ_LOG_BASE={f / 'log'}",
            f"RABBITMQ_PID_FILE={f / 'pid'}",
            f"RABBITMQ_ENABLED_PLUGINS_FILE={f / 'enabled_plugins'}",
            "ERL_EPMD_ADDRESS=127.0.0.1",
        ]
        command = ["runuser", "-u", "rabbitmq", "--", "env", *env, SERVER, "-detached"]
        subprocess.run(command, check=True, timeout=60, capture_output=True)
        end = time.monotonic() + within
        while not _port_open(self.port):
            if time.monotonic() > end:
                log = (f / "log" / f"{self.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"private RabbitMQ node did not start:\n{log}")
            time.sleep(0.5)
        self.ctl("await_startup")

    def stop(self) -> None:
        """Stop the whole node (its Erlang VM too)."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=120)

    def join(self, seed: RabbitNode) -> None:
        """Make this fresh node a member of ``seed``'s cluster."""
        self.ctl("stop_app")
        self.ctl("join_cluster", seed.name)
        self.ctl("start_app")
        self.ctl("await_startup")

    def quorum_queues(self, vhost: str = "/") -> dict[str, QuorumQueue]:
        """The quorum queues of ``vhost`` as this node sees them."""
        listed = self.ctl(
            "list_queues", "-p", vhost, "--formatter", "json", "name", "type", "leader", "members"
        )
        return {
            q["name"]: QuorumQueue(q.get("leader") or "", sorted(q.get("members") or []))
            for q in json.loads(listed)
            if q["type"] == "quorum"
        }

    def snapshot(self, vhost: str = "/", lines: int = 30) -> str:
        """What this node says of its queues, and the warnings and errors at the end of its
        log: the evidence of a failed cluster case."""
        try:
            queues = self.ctl(
                "list_queues",
                "-p",
                vhost,
                "name",
                "type",
                "leader",
                "online",
                "state",
                "consumers",
                "messages_ready",
                "messages_unacknowledged",
            )
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            queues = f"(list_queues failed: {error})"
        log = self.folder / "log" / f"{self.name}.log"
        noted = (
            [
                line
                for line in log.read_text(errors="replace").splitlines()
                if "[warning]" in line or "[error]" in line
            ]
            if log.exists()
            else []
        )
        return f"{self.name} queues:\n{queues}\n{self.name} log:\n" + "\n".join(noted[-lines:])

    def led_elsewhere(self, queue: str, former: str, within: float = 60) -> QuorumQueue:
        """Quorum queue ``queue`` once this node sees a leader for it other than ``former``
        (a stopped node's queues are listed without a leader, or not at all, until an
        election among the other members settles)."""
        end = time.monotonic() + within
        while True:
            try:
                found = self.quorum_queues().get(queue)
            except RuntimeError:  # the node is busy with the departure: ask again
                found = None
            if found is not None and found.leader not in ("", former):
                return found
            if time.monotonic() > end:
                raise AssertionError(f"{queue} still led by {former} after {within} s: {found}")
            time.sleep(0.5)


@dataclass(frozen=True)
class QuorumQueue:
    """Where a quorum queue lives: the node that leads it and every member."""

    leader: str
    members: list[str]


@contextlib.contextmanager
def private_cluster(size: int) -> Iterator[list[RabbitNode]]:
    """``size`` private nodes, the first one's cluster joined by the others; every node stopped
    and its folder removed at the end (the cluster goes with them)."""
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(private_rabbit()) for _ in range(size)]
        for node in nodes[1:]:
            node.join(nodes[0])
        yield nodes


@contextlib.contextmanager
def private_rabbit() -> Iterator[RabbitNode]:
    """A started private node; stopped and its folder removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="shoal-rabbit-"))
    node = RabbitNode(folder, f"shoalfaults{uuid.uuid4().hex[:8]}@localhost", free_port(), 0)
    node.dist_port = free_port()
    for sub in ("mnesia", "log"):
        (folder / sub).mkdir()
    (folder / "rabbitmq.conf").write_text(CONFIG.format(port=node.port))
    (folder / "enabled_plugins").write_text("[].\n")
    (folder / "env.conf").write_text("")
    shutil.chown(folder, "rabbitmq", "rabbitmq")
    for path in folder.rglob("*"):
        shutil.chown(path, "rabbitmq", "rabbitmq")
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(folder, ignore_errors=True)
