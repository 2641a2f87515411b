"""The cluster view's heartbeats in the store (SQLite and Postgres): latest kept, expired
ones dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shoal.names import (
    COMPUTE_QUEUE,
    COMPUTE_QUEUES,
    PYTHON_WASM_COMPUTE_QUEUE,
    SUBMIT_QUEUE,
    WASM_COMPUTE_QUEUE,
)
from shoal.requester.fleet import status
from shoal.requester.store import JobStore
from shoal.wire import Heartbeat


def beat(node_id: str, *, ago: float = 0.0, interval: float = 10.0, **fields: object) -> Heartbeat:
    at = datetime.now(UTC) - timedelta(seconds=ago)
    return Heartbeat(node_id=node_id, role="executor", interval=interval, at=at, **fields)


async def test_the_latest_heartbeat_of_each_node_is_kept(store: JobStore) -> None:
    assert await store.record_heartbeat(beat("e-1", ago=5, slots=2, running=["j-a"]))
    assert await store.record_heartbeat(beat("e-1", ago=1, slots=2, running=["j-b"]))
    assert not await store.record_heartbeat(beat("e-1", ago=3, slots=2, running=["j-c"]))
    assert await store.record_heartbeat(beat("e-2", slots=4))
    nodes = await store.alive_nodes()
    assert [(n["node_id"], n["running"]) for n in nodes] == [("e-1", ["j-b"]), ("e-2", [])]
    assert {"last_seen", "expires_at", "held", "draining", "engines"} <= set(nodes[0])


async def test_an_expired_heartbeat_is_neither_kept_nor_shown(store: JobStore) -> None:
    assert not await store.record_heartbeat(beat("late", ago=31, interval=10))
    assert await store.record_heartbeat(beat("old", ago=2, interval=10))
    assert await store.record_heartbeat(beat("new", interval=10))
    soon = datetime.now(UTC) + timedelta(seconds=29)
    assert [n["node_id"] for n in await store.alive_nodes(soon)] == ["new"]
    assert await store.prune_nodes(soon) == 1
    await store.forget_node("new")
    assert await store.alive_nodes() == []


async def test_status_shows_job_ids_to_operators_only(store: JobStore) -> None:
    await store.record_heartbeat(beat("e-1", slots=2, running=["j-a", "j-b"], held=3))
    nodes = await store.alive_nodes()
    queues = [
        {"name": "shoal.compute", "ready": 4, "consumers": 1},
        {"name": "shoal.submit", "ready": 0, "consumers": 1},
    ]
    seen = status(nodes, queues, operator=True)
    assert seen["nodes"][0]["running"] == ["j-a", "j-b"]
    assert [q["unacknowledged"] for q in seen["queues"]] == [3, None]
    assert status(nodes, queues, operator=False)["nodes"][0]["running"] == 2


async def test_unacknowledged_deliveries_count_for_the_queue_they_came_from(
    store: JobStore,
) -> None:
    """Each compute queue's unacknowledged count sums what the executors hold of it; an
    older executor's heartbeat (``held`` alone) counts for ``shoal.compute``."""
    wasm = {WASM_COMPUTE_QUEUE: 1}
    await store.record_heartbeat(beat("e-1", held=3, held_by_queue={COMPUTE_QUEUE: 2, **wasm}))
    await store.record_heartbeat(beat("e-2", held=1, held_by_queue=wasm))
    await store.record_heartbeat(beat("e-old", held=4))
    await store.record_heartbeat(beat("e-idle"))
    queues = [
        {"name": name, "ready": 0, "consumers": 1}
        for name in (*COMPUTE_QUEUES.values(), SUBMIT_QUEUE)
    ]
    seen = status(await store.alive_nodes(), queues, operator=True)
    assert {q["name"]: q["unacknowledged"] for q in seen["queues"]} == {
        COMPUTE_QUEUE: 6,
        WASM_COMPUTE_QUEUE: 2,
        PYTHON_WASM_COMPUTE_QUEUE: 0,
        SUBMIT_QUEUE: None,
    }
    held = {n["node_id"]: n["held_by_queue"] for n in seen["nodes"]}
    assert held == {"e-1": {COMPUTE_QUEUE: 2, **wasm}, "e-2": wasm, "e-idle": {}, "e-old": {}}
