"""The CLI stays light: help and dry runs never load the broker, database or Docker libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "aio_pika",
    "aiormq",
    "sqlalchemy",
    "aiodocker",
    "structlog",
    "shoal.requester",
    "shoal.executor",
)

TRANSLATION = ("shoal.requester", "shoal.requester.translate")
"""What a dry run loads of the requester: its translators (pydantic only), nothing else."""
PROBE = """
import sys
from shoal.client.main import main
code = main({argv!r})
loaded = [m for m in {heavy!r} if m in sys.modules and m not in {allowed!r}]
print("LOADED:" + ",".join(loaded), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--help"], ()),
        (["job", "--help"], ()),
        (["serve", "--help"], ()),
        (["version"], ()),
        (["exec", "--dry-run", "python", "--", "python", "-c", "pass"], TRANSLATION),
    ],
)
def test_no_heavy_imports(argv: list[str], allowed: tuple[str, ...]) -> None:
    heavy = (
        *HEAVY,
        "shoal.requester.service",
        "shoal.requester.store",
        "shoal.requester.submissions",
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=heavy, allowed=allowed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr.strip().splitlines()[-1] == "LOADED:"
