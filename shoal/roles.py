"""The broker permissions of each role: what each RabbitMQ account may configure, write and
read (regexps over exchange and queue names), and which job-event keys it may bind.

=========  ==============================================================================
requester  everything in its vhost (declares the topology, reads submissions, API calls and
           events, publishes compute jobs, replies and ``recorded`` events)
executor   declares and consumes ``shoal.compute``, ``shoal.compute.wasm`` and
           ``shoal.compute.wasm.python``; its own control queue (``shoal.executor.<id>``)
           bound to ``shoal.control``; publishes to
           ``shoal.events``, and to ``shoal.fleet`` claim requests (routed to
           ``shoal.claims``, answered by direct reply-to), heartbeats (routed to
           ``shoal.heartbeats``) and blob fetches (key ``blobs``, routed to ``shoal.api``,
           which answers only ``blob-get`` from that exchange). Never reads submissions, API
           calls, claims or other queues.
client     publishes to ``shoal.requests`` only (submissions and API calls, each signed with
           its ``user_id``); reads direct replies and its own server-named queues
           (``amq.gen-…``), which it may bind to ``shoal.events`` only with keys
           ``job.<its user name>.…`` (a topic permission, ``{username}`` expanded by the
           broker): the events of its own jobs.
operator   a client who may bind any job's events (``--follow`` another user's job)
=========  ==============================================================================

Publishing to the default exchange is not granted to clients or executors: it would reach
every queue (``shoal.compute``, ``shoal.recorder``) by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shoal.names import EVENTS_EXCHANGE

Role = Literal["requester", "executor", "client", "operator"]
ROLES: tuple[Role, ...] = ("requester", "executor", "client", "operator")

_PRIVATE = r"amq\.gen-.*"
_EXECUTOR_QUEUE = r"shoal\.executor\..+"


@dataclass(frozen=True)
class Permissions:
    """``rabbitmqctl set_permissions`` regexps, and the topic permission on ``shoal.events``
    (``None``: no topic permission, every key allowed)."""

    configure: str
    write: str
    read: str
    topic_write: str | None = None
    topic_read: str | None = None

    def set_permissions_args(self, vhost: str, user: str) -> list[str]:
        """The arguments of ``rabbitmqctl set_permissions`` for ``user``."""
        return ["set_permissions", "-p", vhost, user, self.configure, self.write, self.read]

    def topic_args(self, vhost: str, user: str) -> list[str] | None:
        """The arguments of ``rabbitmqctl set_topic_permissions``, or ``None`` (clear them)."""
        if self.topic_read is None or self.topic_write is None:
            return None
        return [
            "set_topic_permissions",
            "-p",
            vhost,
            user,
            EVENTS_EXCHANGE,
            self.topic_write,
            self.topic_read,
        ]


PERMISSIONS: dict[Role, Permissions] = {
    "requester": Permissions(".*", ".*", ".*"),
    "executor": Permissions(
        configure=rf"^(shoal\.(compute(\.wasm(\.python)?)?|events|control|dlx|fleet)|{_EXECUTOR_QUEUE})$",
        write=rf"^(shoal\.(events|dlx|fleet)|{_EXECUTOR_QUEUE})$",
        read=rf"^(shoal\.(compute(\.wasm(\.python)?)?|control)|{_EXECUTOR_QUEUE})$",
    ),
    "client": Permissions(
        configure=rf"^{_PRIVATE}$",
        write=rf"^(shoal\.requests|{_PRIVATE})$",
        read=rf"^(shoal\.events|{_PRIVATE})$",
        topic_write="^$",
        topic_read=r"^job\.{username}\.",
    ),
    "operator": Permissions(
        configure=rf"^{_PRIVATE}$",
        write=rf"^(shoal\.requests|{_PRIVATE})$",
        read=rf"^(shoal\.events|{_PRIVATE})$",
    ),
}
