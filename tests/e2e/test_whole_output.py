"""Logs arrive whole: output without a final newline reaches the store and the pipe."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import System

pytestmark = [pytest.mark.rabbitmq, pytest.mark.docker]

UNTERMINATED = "import sys; sys.stdout.write('0123456789' * 1000)"


async def test_unterminated_stdout_reaches_job_logs_byte_for_byte(system: System) -> None:
    done = await system.shoal(
        "exec", "python", "--network", "none", "--id-only", "--wait", "--", "python", "-c",
        UNTERMINATED,
    )  # fmt: skip
    assert done.code == 0, done.err
    logs = await system.shoal("job", "logs", done.out.strip())
    assert logs.code == 0, logs.err
    assert logs.out == "0123456789" * 1000
