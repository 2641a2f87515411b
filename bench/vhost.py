"""A private RabbitMQ vhost per benchmark run, so a running system and the bench never mix."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote

BASE_URL = os.environ.get("SHOAL_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmqctl(*args: str) -> None:
    """``rabbitmqctl -q ARGS``; raises when it fails."""
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def private_vhost() -> Iterator[str]:
    """A new vhost for guest; yields its AMQP URL and deletes it afterwards."""
    vhost = f"shoal-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{BASE_URL.rstrip('/')}/{quote(vhost, safe='')}"
    finally:
        rabbitmqctl("delete_vhost", vhost)
