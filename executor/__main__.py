"""``python -m shoal.executor``: run an executor with settings from the environment."""

from __future__ import annotations

import sys

from shoal.executor.service import run
from shoal.executor.settings import ExecutorSettings

if __name__ == "__main__":
    sys.exit(run(ExecutorSettings()))
