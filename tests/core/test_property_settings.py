"""Every property test runs without wall-clock checks, so a loaded machine cannot fail it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]


def _is_property_test(member: object) -> bool:
    return getattr(member, "is_hypothesis_test", False) is True


def _property_tests() -> list[tuple[str, settings]]:
    found = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if "@given" not in path.read_text():
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for attr, test in inspect.getmembers(importlib.import_module(name), _is_property_test):
            found.append((f"{name}.{attr}", test._hypothesis_internal_use_settings))
    return found


PROPERTY_TESTS = _property_tests()


def test_the_property_tests_are_found() -> None:
    assert len(PROPERTY_TESTS) >= 10


@pytest.mark.parametrize(("name", "chosen"), PROPERTY_TESTS, ids=[n for n, _ in PROPERTY_TESTS])
def test_no_deadline_or_too_slow_check(name: str, chosen: settings) -> None:
    assert chosen.deadline is None
    assert HealthCheck.too_slow in chosen.suppress_health_check
