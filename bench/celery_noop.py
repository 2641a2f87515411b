"""The Celery baseline of ``bench.bench_requester``: a no-op task on the same broker.

Two set-ups: Celery's defaults (classic queue, ack on receipt) and, with
``BENCH_CELERY_QUORUM=1``, the guarantees Shoal gives (quorum queue, ack after the task).
The worker (``--pool=solo``) counts the tasks it ran; at the first and at the N-th it prints
``CELERY-FIRST <t>`` / ``CELERY-DONE <t>`` (``time.time()``) so the bench reads the rate off
the worker's own clock. Configured by ``BENCH_BROKER_URL`` and ``BENCH_TASKS``.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1//"))
QUORUM = os.environ.get("BENCH_CELERY_QUORUM") == "1"
QUEUE = "bench.celery.quorum" if QUORUM else "bench.celery"
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
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "128")),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_seen = 0


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(index: int) -> None:
    """Nothing, counted."""
    global _seen
    _seen += 1
    if _seen == 1:
        print(f"CELERY-FIRST {time.time()}", flush=True)
    if _seen == int(os.environ.get("BENCH_TASKS", "0")):
        print(f"CELERY-DONE {time.time()}", flush=True)
