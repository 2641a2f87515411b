"""Parsing of durations, memory sizes and CPU amounts into canonical values.

- durations → seconds (``float``): ``90``, ``90s``, ``1.5m``, ``2h``, ``1h30m``, ``500ms``
- memory → bytes (``int``): ``512Mi``, ``2GB``, ``1g``, ``1048576``
- CPU → cores (``float``): ``500m``, ``1.5``, ``2``
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1024**4,
    "tib": 1024**4,
}
MAX_MEMORY = 2**63 - 1
"""The largest memory size a container engine takes (a signed 64-bit count of bytes)."""
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_CPU = re.compile(r"(\d+(?:\.\d+)?)(m?)")


def _check_type(value: object, kind: str) -> None:
    """``ValueError`` unless ``value`` is a string or a number (JSON ``true`` is neither)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"invalid {kind} {value!r}: must be a string or a number")


def _as_float(value: str | float, kind: str) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond a float's range
        raise ValueError(f"invalid {kind} {value!r}: too large") from None


def _check_positive(amount: float, value: object, kind: str) -> None:
    if (isinstance(amount, float) and not math.isfinite(amount)) or amount <= 0:
        raise ValueError(f"invalid {kind} {value!r}: must be a finite number greater than zero")


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``; a bare number means seconds. Raises ``ValueError``."""
    _check_type(value, "duration")
    if isinstance(value, int | float):
        seconds = _as_float(value, "duration")
    else:
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"invalid duration {value!r}: use a number of seconds or units "
                    "ms, s, m, h, d (e.g. 90s, 5m, 1h30m)"
                )
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    _check_positive(seconds, value, "duration")
    return seconds


def parse_memory(value: str | int) -> int:
    """Bytes in ``value``; a bare number means bytes. Raises ``ValueError``."""
    _check_type(value, "memory size")
    if isinstance(value, int | float):
        _check_positive(value, value, "memory size")
        size = int(value)
    else:
        match = _MEMORY.fullmatch(value.strip().lower())
        if match is None or match.group(2) not in _MEMORY_UNITS:
            raise ValueError(
                f"invalid memory size {value!r}: use a number of bytes or a unit "
                "like 512Mi, 2Gi, 500MB, 2GB"
            )
        amount = float(match.group(1)) * _MEMORY_UNITS[match.group(2)]
        _check_positive(amount, value, "memory size")
        size = int(amount)
    _check_positive(size, value, "memory size")
    if size > MAX_MEMORY:
        raise ValueError(f"invalid memory size {value!r}: more than {format_bytes(MAX_MEMORY)}")
    return size


def parse_cpu(value: str | float) -> float:
    """CPU cores in ``value``: ``1.5`` cores or ``500m`` millicores. Raises ``ValueError``."""
    _check_type(value, "CPU amount")
    if isinstance(value, int | float):
        cores = _as_float(value, "CPU amount")
    else:
        match = _CPU.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(f"invalid CPU amount {value!r}: use cores (1.5) or millicores (500m)")
        cores = float(match.group(1)) / (1000 if match.group(2) else 1)
    _check_positive(cores, value, "CPU amount")
    return cores


def format_bytes(size: int) -> str:
    """``size`` in the largest binary unit that keeps it readable, e.g. ``10.0 MiB``."""
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``seconds`` in the largest unit that divides it (``100d``, ``90m``, ``1.5s``), a form
    :func:`parse_duration` reads back."""
    for unit in ("d", "h", "m"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and count.is_integer():
            return f"{count:.0f}{unit}"
    return f"{seconds:g}s"
