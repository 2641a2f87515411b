"""The CLI stays light: help and dry runs never load the broker, database or Docker libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aio_pika", "aiormq", "sqlalchemy", "aiodocker", "structlog", "requester", "executor")

PROBE = """
import sys
from client.main import main
code = main({argv!r})
print("LOADED:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["job", "--help"],
        ["serve", "--help"],
        ["exec", "--dry-run", "python", "--", "python", "-c", "pass"],
    ],
)
def test_no_heavy_imports(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr.strip().splitlines()[-1] == "LOADED:"
