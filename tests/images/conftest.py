"""Fixtures for the runtime-image tests."""

from __future__ import annotations

from types import ModuleType

import pytest

from .support import load_launcher


@pytest.fixture(scope="session")
def launcher() -> ModuleType:
    """The python image's launcher module, imported from its file."""
    return load_launcher()
