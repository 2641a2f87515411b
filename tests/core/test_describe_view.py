"""``shoal job describe``'s human view of a retried job: one line per attempt."""

from __future__ import annotations

from client.jobs_command import human_view


def test_each_attempt_is_an_execution_line() -> None:
    run = {"exit_code": None, "started_at": None, "ended_at": None, "executor": "ex-1"}
    record = {
        "id": "j-1",
        "name": "retried",
        "state": "completed",
        "job_type": "docker",
        "engine_spec": {"type": "docker", "params": {"image": "busybox"}},
        "created_at": "t0",
        "updated_at": "t1",
        "executions": [
            {**run, "attempt": 1, "state": "failed", "error": "executor error: boom"},
            {**run, "attempt": 2, "state": "completed", "error": None},
        ],
    }
    lines = human_view(record)
    start = lines.index("Executions:")
    assert lines[start + 1].startswith("  ex-1: failed, ")
    assert lines[start + 1].endswith("error: executor error: boom")
    assert lines[start + 2].startswith("  ex-1 (attempt 2): completed, ")
