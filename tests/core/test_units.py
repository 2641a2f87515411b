"""Durations, memory sizes and CPU amounts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shoal.units import format_bytes, format_duration, parse_cpu, parse_duration, parse_memory


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5m", 90.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m5", "-3s", "0", "5m junk"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512Mi", 512 * 1024**2), ("2GB", 2 * 1000**3), ("1gi", 1024**3), ("1048576", 1048576)],
)
def test_memory(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "12Qb", "-1Mi", "0"])
def test_bad_memory(text: str) -> None:
    with pytest.raises(ValueError, match="invalid memory size"):
        parse_memory(text)


@pytest.mark.parametrize(("text", "cores"), [("500m", 0.5), ("1.5", 1.5), ("2", 2.0)])
def test_cpu(text: str, cores: float) -> None:
    assert parse_cpu(text) == cores


@pytest.mark.parametrize("text", ["fast", "0", "1.5x", "0m"])
def test_bad_cpu(text: str) -> None:
    with pytest.raises(ValueError, match="invalid CPU amount"):
        parse_cpu(text)


def test_format_bytes() -> None:
    assert format_bytes(10 * 1024 * 1024) == "10.0 MiB"
    assert format_bytes(12) == "12 B"


@pytest.mark.parametrize(
    ("parse", "kind"),
    [(parse_duration, "duration"), (parse_memory, "memory size"), (parse_cpu, "CPU amount")],
)
@pytest.mark.parametrize(
    "value", [["1"], {"a": 1}, None, True, float("nan"), float("inf"), "9" * 400, 10**400]
)
def test_values_of_another_type_or_not_finite_are_value_errors(
    parse: Callable[[Any], object], kind: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"invalid {kind}"):
        parse(value)


def test_memory_as_a_json_float_is_bytes() -> None:
    assert parse_memory(1.5e3) == 1500  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(8640000, "100d"), (7200, "2h"), (5400, "90m"), (90, "90s"), (1.5, "1.5s")],
)
def test_format_duration_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
