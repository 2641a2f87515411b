"""``shoal.metrics.HealthServer``: the port it listens on, the file it names it in, and a
``/readyz`` that answers whatever its check does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal import metrics
from shoal.metrics import HealthServer
from tests.readiness import port_in, probe


async def ready() -> str | None:
    return None


async def test_an_auto_port_is_named_in_the_port_file_until_closed(tmp_path: Path) -> None:
    port_file = tmp_path / "run" / "metrics-port"
    port_file.parent.mkdir()
    port_file.write_text("1\n")  # left by a run that crashed
    health = HealthServer("127.0.0.1", "auto", ready, port_file=port_file)
    await health.start()
    try:
        assert health.bound is not None
        assert port_in(port_file) == health.bound
        assert await probe(health.bound, "/livez") == (200, "ok\n")
        assert await probe(health.bound, "/readyz") == (200, "ready\n")
        status, text = await probe(health.bound, "/metrics")
        assert status == 200
        assert "shoal_broker_reconnects_total" in text
    finally:
        await health.close()
    assert not port_file.exists()


async def test_port_0_listens_nowhere(tmp_path: Path) -> None:
    health = HealthServer("127.0.0.1", 0, ready, port_file=tmp_path / "metrics-port")
    await health.start()
    assert health.bound is None
    assert not (tmp_path / "metrics-port").exists()
    await health.close()


async def test_readyz_answers_503_when_the_check_fails_or_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken() -> str | None:
        raise ConnectionError("gone")

    async def hanging() -> str | None:
        await asyncio.Event().wait()
        return None

    async def draining() -> str | None:
        return "draining"

    monkeypatch.setattr(metrics, "READY_TIMEOUT", 0.1)
    for check, answer in [
        (broken, "not ready: ConnectionError: gone\n"),
        (hanging, "not ready: the check took over 0.1 s\n"),
        (draining, "not ready: draining\n"),
    ]:
        health = HealthServer("127.0.0.1", "auto", check)
        await health.start()
        try:
            assert health.bound is not None
            assert await probe(health.bound, "/readyz") == (503, answer)
        finally:
            await health.close()
