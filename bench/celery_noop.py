"""The Celery baseline of ``bench.bench_requester``: a no-op task on the same broker.

Three set-ups, chosen by ``BENCH_CELERY_SETUP``:

- ``solo`` (default): a ``--pool=solo`` worker with the bench's prefetch, on a classic
  queue acking on receipt: Celery at its fastest;
- ``quorum``: the same worker with the guarantees Shoal gives (quorum queue, ack after the
  task);
- ``stock``: the worker as Celery ships it: prefork pool with one process per CPU, prefetch
  multiplier 4, classic queue, ack on receipt.

The worker counts the tasks it ran (across its pool's processes); at the first and at the
N-th it prints ``CELERY-FIRST <t>`` / ``CELERY-DONE <t>`` (``time.time()``) so the bench
reads the rate off the worker's own clock. Configured by ``BENCH_BROKER_URL``,
``BENCH_TASKS`` and ``BENCH_PREFETCH``.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

SETUP = os.environ.get("BENCH_CELERY_SETUP", "solo")
QUORUM = SETUP == "quorum"
QUEUE = f"bench.celery.{SETUP}"
TASKS = int(os.environ.get("BENCH_TASKS", "0"))

app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_default_queue=QUEUE,
    task_queues=[
        Queue(  # type: ignore[no-untyped-call]
            QUEUE,
            queue_arguments={"x-queue-type": "quorum"} if QUORUM else None,
            durable=True,
        )
    ],
    task_acks_late=QUORUM,
    worker_redirect_stdouts=False,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
if SETUP != "stock":
    app.conf.worker_prefetch_multiplier = int(os.environ.get("BENCH_PREFETCH", "128"))

_seen = multiprocessing.Value("l", 0)
"""Tasks run so far; created before the pool forks, so its processes share it."""


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(index: int) -> None:
    """Nothing, counted."""
    with _seen.get_lock():
        _seen.value += 1
        seen = _seen.value
    if seen == 1:
        print(f"CELERY-FIRST {time.time()}", flush=True)
    if seen == TASKS:
        print(f"CELERY-DONE {time.time()}", flush=True)
