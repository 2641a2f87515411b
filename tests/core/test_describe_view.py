"""``shoal job describe``'s human view: one line per attempt, outcomes, notes."""

from __future__ import annotations

from shoal.client.jobs_command import human_view


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


def test_a_failed_job_shows_its_outcome_signal_and_what_was_left_out() -> None:
    note = "output 'outputs' (/outputs) left out: more than the 1.0 MiB output limit"
    record = {
        "id": "j-2",
        "name": "big",
        "state": "failed",
        "exit_code": 139,
        "error": "exit code: ended by SIGSEGV",
        "job_type": "docker",
        "engine_spec": {"type": "docker", "params": {"image": "busybox"}},
        "created_at": "t0",
        "updated_at": "t1",
        "executions": [],
        "left_out": [note],
    }
    lines = human_view(record)
    assert "Outcome:     failed (exit 139): ended by SIGSEGV" in lines
    assert "Signal:      SIGSEGV" in lines
    assert "Error:       exit code: ended by SIGSEGV" in lines
    assert lines[-1] == f"Left out:    {note}"


def test_limits_the_executor_lowered_are_shown() -> None:
    record = {
        "id": "j-3",
        "name": "greedy",
        "state": "running",
        "job_type": "docker",
        "engine_spec": {"type": "docker", "params": {"image": "busybox"}},
        "created_at": "t0",
        "updated_at": "t1",
        "executions": [],
        "lowered": ["cpu 64 → 2 (node maximum)", "memory 8.0 GiB → 4.0 GiB (node maximum)"],
    }
    lines = human_view(record)
    assert "Limits lowered: cpu 64 → 2 (node maximum)" in lines
    assert "Limits lowered: memory 8.0 GiB → 4.0 GiB (node maximum)" in lines
