"""The broker's names and keys: one definition, importable without an AMQP library.

::

    shoal.requests  direct exchange  client → requester: key ``shoal.submit`` or ``shoal.api``
                                     routes to the queue of that name (the only way in for
                                     clients, who may not publish to the default exchange)
    shoal.submit    quorum queue     submissions (reply_to + correlation_id)
    shoal.compute   quorum queue     requester → executors: docker jobs
    shoal.compute.wasm  quorum queue requester → executors serving the wasm engine
    shoal.compute.wasm.python  quorum queue  requester → executors serving the wasm engine
                                     with its python runtime (``python --runtime=wasm``)
    shoal.api       quorum queue     client → requester RPC over the job store
    shoal.fleet     direct exchange  executor → requester: key ``claims`` routes to
                                     shoal.claims (executors may not write to
                                     ``shoal.requests``, which would let them submit jobs)
    shoal.claims    quorum queue     executor → requester RPC: claim, renew, release runs
                                     (direct reply-to, signed with the executor's user_id)
    shoal.events    topic exchange   ``job.<owner>.<job id>.<kind>``: the owner is a word of the
                                     key so the broker's topic permissions can let a user bind
                                     only their own jobs' events
    shoal.control   fanout exchange  stop requests → every executor's private queue
    shoal.dlx       fanout exchange  dead letters → shoal.dead (quorum queue, bounded)

A user name is also a word of a routing key and is expanded into a permission regexp
(``{username}``), so it is restricted to :data:`USERNAME` (no dots, no regexp characters).
"""

from __future__ import annotations

import re

SUBMIT_QUEUE = "shoal.submit"
COMPUTE_QUEUE = "shoal.compute"
WASM_COMPUTE_QUEUE = "shoal.compute.wasm"
PYTHON_WASM_COMPUTE_QUEUE = "shoal.compute.wasm.python"
PYTHON_WASM = "wasm-python"
"""The lane of wasm jobs run by the executors' python runtime (not every wasm executor has
one: it comes with the ``shoal[wasm-python]`` extra)."""
COMPUTE_QUEUES = {
    "docker": COMPUTE_QUEUE,
    "wasm": WASM_COMPUTE_QUEUE,
    PYTHON_WASM: PYTHON_WASM_COMPUTE_QUEUE,
}
"""Lane → the compute queue of its jobs (docker keeps the queue it always had)."""
API_QUEUE = "shoal.api"
CLAIMS_QUEUE = "shoal.claims"
RECORDER_QUEUE = "shoal.recorder"
DEAD_QUEUE = "shoal.dead"
REQUESTS_EXCHANGE = "shoal.requests"
FLEET_EXCHANGE = "shoal.fleet"
CLAIMS_KEY = "claims"
BLOBS_KEY = "blobs"
"""``shoal.fleet`` key routed to ``shoal.api``: executors fetch blobs (op ``blob-get``) there."""
HEARTBEATS_QUEUE = "shoal.heartbeats"
HEARTBEAT_KEY = "heartbeat"
EVENTS_EXCHANGE = "shoal.events"
CONTROL_EXCHANGE = "shoal.control"
DEAD_LETTER_EXCHANGE = "shoal.dlx"
EXECUTOR_QUEUE_PREFIX = "shoal.executor."
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

WORK_QUEUES = (
    SUBMIT_QUEUE,
    COMPUTE_QUEUE,
    WASM_COMPUTE_QUEUE,
    PYTHON_WASM_COMPUTE_QUEUE,
    API_QUEUE,
    RECORDER_QUEUE,
    CLAIMS_QUEUE,
    HEARTBEATS_QUEUE,
)
REQUEST_QUEUES = (SUBMIT_QUEUE, API_QUEUE)
"""Queues clients reach through ``shoal.requests`` (routing key = queue name)."""
RECORDED_KINDS = ("state", "log", "result")
"""Event kinds the recorder stores; it publishes ``recorded`` itself."""

USERNAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a Shoal user (a RabbitMQ account) may be called."""


def lane(engine: str, runtime: object = None) -> str:
    """The lane of a job for ``engine`` (its ``params``' ``runtime``): the engine's name, or
    :data:`PYTHON_WASM` for a wasm job run by the python runtime. Executors say which lanes
    they serve (heartbeat ``engines``) and consume their compute queues."""
    return PYTHON_WASM if engine == "wasm" and runtime == "python" else engine


def compute_queue(lane: str) -> str:
    """The compute queue of jobs in ``lane`` (:func:`lane`); an engine no executor serves
    gets the docker queue, whose executors fail the job as unsupported."""
    return COMPUTE_QUEUES.get(lane, COMPUTE_QUEUE)


def event_key(owner: str, job_id: str, kind: str) -> str:
    """The routing key of a job event on ``shoal.events``."""
    return f"job.{owner}.{job_id}.{kind}"


def valid_username(name: str) -> bool:
    """Whether ``name`` can be a Shoal user (see :data:`USERNAME`)."""
    return USERNAME.fullmatch(name) is not None
