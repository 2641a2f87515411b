"""Outcomes: a category, a line and a signal from a job's state and error; its exit code."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import outcomes
from shoal.outcomes import EXIT_OUTSIDE, EXIT_STOPPED, Outcome, exit_status, explain, headline

JOB = "j-00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("state", "error", "expected"),
    [
        ("completed", None, Outcome(None)),
        ("running", None, Outcome(None)),
        (
            "failed",
            "dependencies failed: pip install shoalprobe exited 1",
            Outcome("dependency-install", "pip install shoalprobe exited 1"),
        ),
        ("failed", "exit code: ended by SIGSEGV", Outcome("exit", "ended by SIGSEGV", "SIGSEGV")),
        (
            "failed",
            "timeout: execution exceeded 1s (ended by SIGKILL after the 10s grace)",
            Outcome(
                "timeout", "execution exceeded 1s (ended by SIGKILL after the 10s grace)", "SIGKILL"
            ),
        ),
        (
            "stopped",
            "stopped: stopped by user (ended by SIGTERM)",
            Outcome("stopped", "stopped by user (ended by SIGTERM)", "SIGTERM"),
        ),
        ("stopped", "stopped by user", Outcome("stopped", "stopped by user")),
        (
            "stopped",
            "stopped: stopped by user (interrupted at once: WASI has no signals)",
            Outcome("stopped", "stopped by user (interrupted at once: WASI has no signals)"),
        ),
        ("failed", "oom-killed: used more", Outcome("oom", "used more")),
        ("failed", "queue timeout: waited 60s", Outcome("expired", "waited 60s")),
        (
            "failed",
            "expired in the queue: not started within its queue timeout of 5s",
            Outcome("expired", "not started within its queue timeout of 5s"),
        ),
        (
            "failed",
            "timed out: its total timeout of 5s ran out",
            Outcome("timeout", "its total timeout of 5s ran out"),
        ),
        ("failed", "lost: gone (after 2 attempts)", Outcome("lost", "gone (after 2 attempts)")),
        (
            "failed",
            "delivery limit reached: taken more than 5 times and never finished",
            Outcome("lost", "taken more than 5 times and never finished"),
        ),
        ("failed", "executor error: boom", Outcome("engine", "boom")),
        (
            "failed",
            "expired before anyone took it (dead-lettered from shoal.compute)",
            Outcome("expired", "expired before anyone took it (dead-lettered from shoal.compute)"),
        ),
        ("failed", "something else", Outcome("failed", "something else")),
        ("failed", None, Outcome("failed", "")),
    ],
)
def test_explain(state: str, error: str | None, expected: Outcome) -> None:
    assert explain(state, error) == expected


def test_every_category_is_listed() -> None:
    assert set(outcomes.PREFIXES.values()) | {"failed"} == set(outcomes.CATEGORIES)


def record(state: str, error: str | None = None, **more: Any) -> dict[str, Any]:
    return {"id": JOB, "state": state, "error": error, "exit_code": None, **more}


def test_headline_of_a_dependency_install_points_at_its_log() -> None:
    failed = record(
        "failed",
        "dependencies failed: pip install shoalprobe exited 1",
        exit_code=3,
        outputs={"outputs": {"size": 10, "truncated": False}},
    )
    assert headline(failed) == (
        "failed (dependency install): pip install shoalprobe exited 1 — "
        f"shoal job get {JOB} for requirements.log"
    )
    failed["outputs"] = {}
    assert headline(failed) == "failed (dependency install): pip install shoalprobe exited 1"


def test_headlines() -> None:
    assert headline(record("completed")) == "completed"
    assert headline(record("failed", "exit code: ValueError: bad", exit_code=1)) == (
        "failed (exit 1): ValueError: bad"
    )
    assert headline(record("stopped", "stopped: stopped by user (ended by SIGTERM)")) == (
        "stopped: stopped by user (ended by SIGTERM)"
    )
    assert headline(record("failed", "oom-killed: too much")) == "failed (oom): too much"
    assert headline(record("failed", "who knows")) == "failed: who knows"
    assert headline(record("failed", "who knows", exit_code=4)) == "failed (exit 4): who knows"


@pytest.mark.parametrize(
    ("job", "code"),
    [
        (record("completed", exit_code=0), 0),
        (record("failed", "exit code: bad", exit_code=7), 7),
        (record("failed", "exit code: ended by SIGSEGV", exit_code=139), 139),
        (record("failed", "dependencies failed: pip", exit_code=3), EXIT_OUTSIDE),
        (record("failed", "timeout: execution exceeded 1s", exit_code=143), EXIT_OUTSIDE),
        (record("failed", "lost: gone"), EXIT_OUTSIDE),
        (record("failed", "who knows", exit_code=4), 4),
        (record("failed", "who knows"), EXIT_OUTSIDE),
        (record("stopped", "stopped: by user", exit_code=0), EXIT_STOPPED),
        (record("stopped", "stopped by user"), EXIT_STOPPED),
    ],
)
def test_exit_status(job: dict[str, Any], code: int) -> None:
    assert exit_status(job) == code
