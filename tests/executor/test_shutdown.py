"""An executor's shutdown runs every step, whatever one of them raises."""

from __future__ import annotations

from shoal.executor.service import shut_down


async def test_a_failing_step_does_not_skip_the_later_ones() -> None:
    done: list[str] = []

    async def ok(name: str) -> None:
        done.append(name)

    async def broken() -> None:
        raise ConnectionError("the broker went away")

    await shut_down(
        [("jobs", lambda: ok("jobs")), ("broker", broken), ("gateway", lambda: ok("gateway"))]
    )
    assert done == ["jobs", "gateway"]
