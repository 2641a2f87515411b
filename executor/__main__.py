"""``python -m executor``: run an executor with settings from the environment."""

from __future__ import annotations

import sys

from executor.service import run
from executor.settings import ExecutorSettings

if __name__ == "__main__":
    sys.exit(run(ExecutorSettings()))
