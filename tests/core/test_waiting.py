"""What a job that has not started waits for (``shoal.requester.waiting``)."""

from __future__ import annotations

from shoal.names import PYTHON_WASM, compute_queue, lane
from shoal.requester.waiting import waiting_for


def executor(*engines: str, slots: int = 2, running: int = 0) -> dict[str, object]:
    return {
        "role": "executor",
        "engines": list(engines),
        "slots": slots,
        "running": [f"j-{n}" for n in range(running)],
    }


def test_no_executor_alive() -> None:
    assert waiting_for("wasm", [{"role": "requester", "engines": []}]).startswith(
        "an executor serving engine 'wasm': none is alive; the job runs once one starts"
    )


def test_executors_of_other_engines_are_named() -> None:
    line = waiting_for("wasm", [executor("docker"), executor("docker")])
    assert "none is alive (executors alive serve: docker)" in line


def test_busy_slots_of_the_engines_executors() -> None:
    line = waiting_for("docker", [executor("docker", "wasm", running=2), executor("docker")])
    assert line == "a free slot: 2 executor(s) serve engine 'docker', 2 of their 4 slot(s) busy"


def test_python_on_wasm_has_a_lane_of_its_own() -> None:
    assert lane("wasm", "python") == PYTHON_WASM
    assert lane("wasm", None) == "wasm"
    assert lane("docker", "python") == "docker"
    assert compute_queue(PYTHON_WASM) == "shoal.compute.wasm.python"
    line = waiting_for(PYTHON_WASM, [executor("docker", "wasm")])
    assert line.startswith(
        "an executor serving engine 'wasm-python': none is alive (executors alive serve: "
        "docker, wasm)"
    )
