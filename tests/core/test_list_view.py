"""``shoal job list``'s rows, times and footer, and ``--since``, without services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shoal.client.listing import duration, footer, format_duration, format_time, since_time
from shoal.errors import UsageError

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.42, "0.4s"), (42, "42s"), (185, "3m05s"), (7620, "2h07m"), (273600, "3d04h")],
)
def test_durations(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_times_relative_on_a_terminal_iso_with_a_zone_otherwise() -> None:
    moment = NOW - timedelta(minutes=5, seconds=3)
    assert format_time(moment, NOW, relative=True) == "5m03s ago"
    assert format_time(NOW - timedelta(seconds=4.5), NOW, relative=True) == "4s ago"
    assert format_time(NOW, NOW, relative=True) == "just now"
    assert format_time(moment, NOW, relative=False) == "2026-12-07T05:54:57Z"
    assert format_time(None, NOW, relative=False) == "-"


def test_duration_of_running_ended_and_waiting_jobs() -> None:
    start = (NOW - timedelta(seconds=90)).isoformat()
    assert duration({"state": "running", "started_at": start}, NOW) == "1m30s"
    ended = {"state": "completed", "started_at": start, "ended_at": NOW.isoformat()}
    assert duration(ended | {"ended_at": (NOW - timedelta(seconds=60)).isoformat()}, NOW) == "30s"
    assert duration({"state": "queued", "started_at": None}, NOW) == "-"


def test_footer_only_when_the_list_is_not_whole() -> None:
    jobs = [{"id": f"j-{n}"} for n in range(50)]
    assert footer({"jobs": jobs, "total": 50, "skipped": 0, "next": None}) is None
    more = {"jobs": jobs, "total": 844, "skipped": 0, "next": "j-49"}
    assert footer(more) == "showing 50 of 844 (next: --after j-49)"
    assert footer(more | {"skipped": 50}) == "showing 51-100 of 844 (next: --after j-49)"
    assert footer({"jobs": [], "total": 3, "skipped": 3, "next": None}) == "showing 0 of 3"


def test_since_is_a_duration_back_or_a_time() -> None:
    assert since_time("2h", NOW) == "2026-12-07T04:00:00+00:00"
    assert since_time("2026-12-01T10:00+01:00", NOW) == "2026-12-01T09:00:00+00:00"
    local = datetime(2026, 12, 1, 10, 0).astimezone(UTC).isoformat()
    assert since_time("2026-12-01T10:00", NOW) == local
    with pytest.raises(UsageError, match="neither a duration"):
        since_time("soon", NOW)


def test_the_cli_knows_every_job_state() -> None:
    from shoal.client.jobs_command import STATES
    from shoal.client.listing import SUMMARY_STATES
    from shoal.model import JobState

    assert sorted(STATES) == sorted(state.value for state in JobState)
    assert set(SUMMARY_STATES) == {state.value for state in JobState} - {"translated"}
