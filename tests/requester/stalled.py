"""A requester whose chosen step hangs after printing ``STALLED``: the kill tests' victim.

``python -m tests.requester.stalled ack|mark_queued`` with the usual ``SHOAL_*`` variables.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from shoal.requester import service
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import JobStore
from shoal.requester.submissions import SubmissionPipeline


async def _hang(*_args: Any, **_kwargs: Any) -> Any:
    print("STALLED", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    where = sys.argv[1]
    if where == "ack":
        SubmissionPipeline._ack = _hang  # type: ignore[method-assign]
    elif where == "mark_queued":
        write_round = JobStore.write_round

        async def stall_marking(self: JobStore, new: Any, queued: Any) -> Any:
            if queued:
                await _hang()
            return await write_round(self, new, queued)

        JobStore.write_round = stall_marking  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown step {where!r}")
    return service.run(RequesterSettings())


if __name__ == "__main__":
    sys.exit(main())
