"""Prebuilt environments on a real Docker engine: built by the install step, read-only in jobs.

Each test is an attack or a promise of issue 14's "the dependency cache cannot be written by
jobs": a hostile job tries every way it has to plant a fake ``tinydep`` for the next user, and
the next job installing ``tinydep`` imports the real one; two jobs with the same requirements
share one install; a failed install fails the job with pip's reason. Packages come from indexes
served by the test on the docker bridge (jobs get ``full`` network on this test node).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shoal.executor.engines.docker.depcache import LABEL_ENV_KEY, VOLUME_PREFIX
from shoal.executor.engines.docker.depplan import env_key, env_plan, pip_env
from shoal.executor.engines.docker.docker_runner import DockerRunner
from shoal.executor.engines.docker.gateway import MemoryGateway
from shoal.executor.engines.docker.runner import LABEL_EXECUTOR
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl, Node, Outcome, execute
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.images import LAUNCHER_PATH
from shoal.model import Job, JobState
from shoal.wire import JobEvent, utcnow
from tests.images.support import (
    bridge_gateway,
    docker,
    make_tinydep,
    make_wheel,
    serve_directory,
)

from .support import PYTHON_IMAGE, docker_job, docker_node, docker_of, inline_input, untar

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

SHOW = b"import tinydep, sys; print(tinydep.VALUE, sys.prefix)\n"
REQUIREMENTS = b"tinydep==1.0\n"
HOSTILE = b'''"""Plant a fake tinydep wherever this job can write, and say where it could."""
import glob, os, sys
FAKE = 'VALUE = "planted"\\n'
targets = glob.glob("/shoal-env/lib/python*/site-packages/tinydep/__init__.py") + [
    "/shoal-env/.shoal-complete", "/shoal-env/planted.txt", "/shoal-cache/envs/x/planted.txt",
    "/opt/jobenv/planted.txt", "/code/planted.txt", "/usr/local/lib/planted.txt",
    "/tmp/planted.txt", "/outputs/planted.txt",
]
for path in targets:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(FAKE)
        print("planted", path)
    except OSError as error:
        print("refused", path, error.errno)
'''


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """PIP_* settings of two indexes: the real tinydep, and a hostile one serving a fake."""
    host = bridge_gateway()
    real, evil = tmp_path_factory.mktemp("real"), tmp_path_factory.mktemp("evil")
    make_tinydep(real / "simple" / "tinydep")
    make_wheel(evil / "simple" / "tinydep", "tinydep", "1.0", 'VALUE = "evil index"\n')
    with serve_directory(real, host) as real_url, serve_directory(evil, host) as evil_url:
        yield {
            "real": f"{real_url}/simple/",
            "evil": f"{evil_url}/simple/",
            "host": host,
        }


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    """An executor's node on the real engine; the volumes it built are removed afterwards."""
    settings = ExecutorSettings(
        node_id=f"depcache-{uuid.uuid4().hex[:8]}",
        slots=2,
        allow_full_network=True,
        pull_policy=PullPolicy.NEVER,
        ca_bundle=None,
        log_flush_seconds=0.05,
    )
    executor_id = f"{settings.node_id}-1"
    runner = DockerRunner.connect()
    yield docker_node(settings, runner, MemoryEventSink(), MemoryGateway(), executor_id)
    for volume in await built_volumes(executor_id):
        await runner.remove_volume(volume)
    await runner.close()


async def built_volumes(executor_id: str) -> list[str]:
    """The environment volumes built by ``executor_id``."""
    listed = docker(
        "volume", "ls", "-q", "--filter", f"label={LABEL_EXECUTOR}={executor_id}",
        "--filter", f"label={LABEL_ENV_KEY}",
    )  # fmt: skip
    return sorted(listed.stdout.split())


def python_job(code: dict[str, bytes], index: str, host: str) -> Job:
    """A python-image job running ``python app.py`` with ``code`` in /code, on ``index``."""
    return docker_job(
        "",
        image=PYTHON_IMAGE,
        argv=[LAUNCHER_PATH, "--", "python", "app.py"],
        dep_cache=True,
        inputs=[inline_input("dir", code, "/code")],
        env={"PIP_INDEX_URL": index, "PIP_TRUSTED_HOST": host},
        network={"type": "full"},
    )


async def run(node: Node, job: Job) -> tuple[Outcome, list[JobEvent]]:
    outcome = await execute(job, utcnow(), node, JobControl())
    assert isinstance(node.sink, MemoryEventSink)
    return outcome, node.sink.of(job.id)


def stdout(events: list[JobEvent]) -> str:
    return "".join(e.data for e in events if e.kind == "log" and e.stream == "stdout")


def outputs(events: list[JobEvent]) -> dict[str, bytes]:
    result = next(e for e in events if e.kind == "result")
    return untar(result.outputs["outputs"])


async def test_hostile_jobs_cannot_plant_an_environment(
    node: Node, indexes: dict[str, str]
) -> None:
    host = indexes["host"]
    hostile = {"app.py": HOSTILE, "requirements.txt": REQUIREMENTS}
    first, events = await run(node, python_job(hostile, indexes["real"], host))
    assert first.state is JobState.COMPLETED, first.error
    planted = [line for line in stdout(events).splitlines() if line.startswith("planted")]
    assert planted == [  # its own volumes and tmpfs, removed with its container
        "planted /code/planted.txt",
        "planted /tmp/planted.txt",
        "planted /outputs/planted.txt",
    ]
    same_text_evil_index = {"app.py": SHOW, "requirements.txt": REQUIREMENTS}
    evil, events = await run(node, python_job(same_text_evil_index, indexes["evil"], host))
    assert evil.state is JobState.COMPLETED, evil.error
    assert stdout(events).startswith("evil index /shoal-env"), "its own env, under its own key"
    check = SHOW + b"import glob; print(sorted(glob.glob('/*/planted.txt')))\n"
    victim, events = await run(node, python_job({"app.py": check, "requirements.txt": REQUIREMENTS},
                                                indexes["real"], host))  # fmt: skip
    assert victim.state is JobState.COMPLETED, victim.error
    assert stdout(events) == "tinydep-1.0 /shoal-env\n[]\n"
    assert (
        "using the environment prebuilt by the executor"
        in outputs(events)["requirements.log"].decode()
    )
    assert len(await built_volumes(node.executor_id)) == 2, "one per index, none per job"


async def test_same_requirements_share_one_install(node: Node, indexes: dict[str, str]) -> None:
    code = {"app.py": b'"""pip install tinydep==1.0"""\n' + SHOW}
    jobs = [python_job(code, indexes["real"], indexes["host"]) for _ in range(2)]
    results = await asyncio.gather(*(run(node, job) for job in jobs))
    logs = []
    for outcome, events in results:
        assert outcome.state is JobState.COMPLETED, outcome.error
        assert stdout(events) == "tinydep-1.0 /shoal-env\n"
        logs.append(outputs(events)["requirements.log"].decode())
    installed = [log for log in logs if "installing the shared environment" in log]
    assert len(installed) == 1, logs
    assert "Successfully installed tinydep-1.0" in installed[0]
    assert all("using the environment prebuilt by the executor" in log for log in logs)
    assert len(await built_volumes(node.executor_id)) == 1


async def test_failed_install_fails_the_job_with_pips_reason(
    node: Node, indexes: dict[str, str], tmp_path: Path
) -> None:
    code = {"app.py": SHOW, "requirements.txt": b"tinydep==9.9\n"}
    outcome, events = await run(node, python_job(code, indexes["real"], indexes["host"]))
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith(
        "dependencies failed: pip install -r requirements.txt exited 1: ERROR: "
    ), outcome.error
    assert "tinydep==9.9" in outcome.error
    kinds = [e.kind for e in events]
    assert kinds == ["state", "result", "state"], "the job's container never ran"
    assert "tinydep==9.9" in outputs(events)["requirements.log"].decode()
    assert await built_volumes(node.executor_id) == [], "a failed install leaves no volume"


async def test_an_incomplete_environment_is_never_mounted(
    node: Node, indexes: dict[str, str]
) -> None:
    """A volume without the executor's marker (being built elsewhere, or left by a crash,
    holding a planted tinydep) is left alone: the job installs for itself."""
    code = {"app.py": SHOW, "requirements.txt": REQUIREMENTS}
    job = python_job(code, indexes["real"], indexes["host"])
    plan = env_plan({"app.py": SHOW, "requirements.txt": REQUIREMENTS})
    assert plan is not None
    image = await docker_of(node).runner.image(PYTHON_IMAGE, PullPolicy.NEVER)
    volume = VOLUME_PREFIX + env_key(plan, image.id, pip_env(job.task.env))[:48]
    await docker_of(node).runner.create_volume(
        volume, {LABEL_EXECUTOR: node.executor_id, LABEL_ENV_KEY: "x"}
    )
    site = "/shoal-env/lib/python3.11/site-packages/tinydep"
    plant = f"mkdir -p {site} && echo 'VALUE = \"planted\"' > {site}/__init__.py"
    docker("run", "--rm", "-v", f"{volume}:/shoal-env", "--entrypoint", "sh", PYTHON_IMAGE,
           "-c", plant)  # fmt: skip
    outcome, events = await run(node, job)
    assert outcome.state is JobState.COMPLETED, outcome.error
    assert stdout(events) == "tinydep-1.0 /tmp/shoal-env\n"
    log = outputs(events)["requirements.log"].decode()
    assert "installing for this job only (no prebuilt environment)" in log
