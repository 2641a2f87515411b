"""Which runtime images the live executors hold, as the submission path sees them
(``shoal.requester.admission.ImageCheck``)."""

from __future__ import annotations

from typing import Any

from shoal.images import duckdb_image
from shoal.requester.admission import ImageCheck


def executor(engines: list[str], images: list[str]) -> dict[str, Any]:
    return {"role": "executor", "engines": engines, "images": images}


async def test_only_docker_executors_that_say_count_and_a_store_failure_keeps_the_last() -> None:
    answers: list[list[dict[str, Any]] | Exception] = [
        [{"role": "requester", "engines": []}, executor(["docker"], []), executor(["wasm"], [])],
        [executor(["docker", "wasm"], [duckdb_image()]), executor(["docker"], [])],
        RuntimeError("the store is away"),
    ]

    async def nodes() -> list[dict[str, Any]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    check = ImageCheck(nodes, ttl=0)
    assert await check.held() is None, "no docker executor says which images it holds"
    assert await check.held() == frozenset({duckdb_image()})
    assert await check.held() == frozenset({duckdb_image()})


async def test_the_live_executors_are_asked_once_per_ttl() -> None:
    asked = 0

    async def nodes() -> list[dict[str, Any]]:
        nonlocal asked
        asked += 1
        return [executor(["docker"], [duckdb_image()])]

    check = ImageCheck(nodes, ttl=60)
    for _ in range(5):
        assert await check.held() == frozenset({duckdb_image()})
    assert asked == 1
