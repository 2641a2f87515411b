"""One job's run on the in-memory twins: events, inputs, outputs, limits, stop, timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from yarl import URL

from shoal.client.jobs_command import human_view
from shoal.executor.engines.docker.gateway import MemoryGateway
from shoal.executor.engines.docker.memory_runner import MemoryRunner
from shoal.executor.engines.docker.runner import ImageInfo
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import JobControl, Node, Outcome, execute
from shoal.executor.failures import exit_error
from shoal.executor.service import Executor
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.model import Job, JobState
from shoal.outcomes import explain
from shoal.requester.store import JobStore, NewJob
from shoal.requester.store import Limits as StoreLimits
from shoal.requester.store.retries import kind_of
from shoal.wire import ComputeRequest, JobEvent, decode, encode, utcnow

from .support import (
    BASE_IMAGE,
    PYTHON_IMAGE,
    docker_job,
    docker_node,
    docker_of,
    http_server,
    inline_input,
    node_address,
    untar,
)

pytestmark = pytest.mark.timeout(30)

STORE_LIMITS = StoreLimits(log_bytes=1024, output_bytes=1024)


@pytest.fixture
def settings(tmp_path: Path) -> ExecutorSettings:
    return ExecutorSettings(
        node_id="unit",
        slots=2,
        allowed_local_dirs=[tmp_path / "allowed"],
        allow_private_addresses=True,
        log_flush_seconds=0.05,
        pull_policy=PullPolicy.NEVER,
        allowed_images=[BASE_IMAGE, "shoal/nope:*"],
    )


def set_settings(node: Node, settings: ExecutorSettings) -> None:
    """Give the node (and its engine) other settings."""
    node.settings = settings
    docker_of(node).settings = settings


def twin(node: Node) -> MemoryRunner:
    """The node's in-memory container runner."""
    runner = docker_of(node).runner
    assert isinstance(runner, MemoryRunner)
    return runner


def gateway(node: Node) -> MemoryGateway:
    """The node's in-memory gateway."""
    found = docker_of(node).gateway
    assert isinstance(found, MemoryGateway)
    return found


@pytest.fixture
async def node(settings: ExecutorSettings) -> AsyncIterator[Node]:
    runner = MemoryRunner(images={BASE_IMAGE: ImageInfo(user="")})
    yield docker_node(
        settings=settings,
        runner=runner,
        sink=MemoryEventSink(),
        gateway=MemoryGateway(),
        executor_id="exec-unit",
    )
    assert runner.containers == {}, "every container is removed"


def sink(node: Node) -> MemoryEventSink:
    assert isinstance(node.sink, MemoryEventSink)
    return node.sink


async def run(node: Node, job: Job, control: JobControl | None = None) -> Outcome:
    return await execute(job, utcnow(), node, control or JobControl())


def fake_usage(size: int) -> Callable[[str, int], Awaitable[int | None]]:
    async def usage(container: str, limit: int) -> int | None:
        return size

    return usage


def kinds(events: list[JobEvent]) -> list[str]:
    return [f"{e.kind}:{e.state}" if e.kind == "state" else e.kind for e in events]


def logs(events: list[JobEvent], stream: str) -> str:
    return "".join(e.data for e in events if e.kind == "log" and e.stream == stream)


async def test_completed_job_events_in_order(node: Node) -> None:
    job = docker_job("echo hello; echo oops >&2; echo result > /outputs/r.txt")
    outcome = await run(node, job)
    events = sink(node).of(job.id)
    assert outcome.state is JobState.COMPLETED
    assert kinds(events)[0] == "state:running"
    assert kinds(events)[-2:] == ["result", "state:completed"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.executor for e in events} == {"exec-unit"}
    assert logs(events, "stdout") == "hello\n"
    assert logs(events, "stderr") == "oops\n"
    result = events[-2]
    assert untar(result.outputs["outputs"]) == {"r.txt": b"result\n"}
    final = events[-1]
    assert final.exit_code == 0
    assert final.error is None
    assert final.started_at is not None
    assert final.ended_at is not None
    assert final.started_at <= final.ended_at


async def test_limits_lowered_by_the_node_reach_job_describe(node: Node, tmp_path: Path) -> None:
    """Executor → running event → the requester's store → ``job describe``."""
    set_settings(node, node.settings.model_copy(update={"max_cpu": 2.0}))
    job = docker_job("true", resources={"cpu": 64}, timeouts={"execution": "100d"})
    outcome = await run(node, job)
    events = sink(node).of(job.id)
    running, *rest = events
    notes = ["cpu 64 → 2 (node maximum)", "execution timeout 100d → 1d (node maximum)"]
    assert running.state is JobState.RUNNING
    assert running.lowered == outcome.notes == notes
    assert all(not event.lowered for event in rest), "said once, in the running event"
    assert "lowered" not in json.loads(encode(rest[-1])), (
        "left out of the wire while empty: older components read such events as before"
    )
    store = await JobStore.open(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}", STORE_LIMITS)
    try:
        await store.add_jobs([NewJob(job, job)])
        await store.record_events([decode(encode(event), JobEvent) for event in events])
        record = await store.describe(job.id)
    finally:
        await store.close()
    assert record["lowered"] == notes
    assert [f"Limits lowered: {note}" for note in notes] == [
        line for line in human_view(record) if line.startswith("Limits lowered:")
    ]


async def test_nonzero_exit_fails(node: Node) -> None:
    job = docker_job("echo bad >&2; exit 3")
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.exit_code == 3
    assert outcome.error == "exit code: bad"


async def test_nonzero_exit_without_stderr_says_the_code(node: Node) -> None:
    outcome = await run(node, docker_job("echo fine; exit 3"))
    assert outcome.error == "exit code: the command exited with code 3"


async def test_exit_by_a_signal_names_it(node: Node) -> None:
    outcome = await run(node, docker_job("echo boom >&2; exit 139"))
    assert outcome.state is JobState.FAILED
    assert outcome.error == "exit code: ended by SIGSEGV: boom"


@pytest.mark.parametrize(
    ("code", "line", "error"),
    [
        (
            3,
            "shoal-launch: dependency install failed (pip install shoalprobe exited 1); "
            "see /outputs/requirements.log",
            "dependencies failed: pip install shoalprobe exited 1",
        ),
        (3, "shoal-launch: something new", "dependencies failed: something new"),
        (4, "shoal-launch: cannot stage /code: gone", "setup failed: cannot stage /code: gone"),
        (127, "shoal-launch: command not found: nope", "exit code: command not found: nope"),
        (3, "my own line", "exit code: my own line"),
        (1, "shoal-launch: printed by the job", "exit code: shoal-launch: printed by the job"),
        (137, "", "exit code: ended by SIGKILL"),
    ],
)
def test_exit_error_reads_the_launcher_and_signals(code: int, line: str, error: str) -> None:
    assert exit_error(code, line) == error


async def test_inline_file_and_dir_inputs(node: Node) -> None:
    job = docker_job(
        "cat /code/app.txt; cat /data/sub/b.txt",
        inputs=[
            inline_input("file", {"app.txt": b"app\n"}, "/code/app.txt"),
            inline_input("dir", {"sub/b.txt": b"bee\n"}, "/data"),
        ],
    )
    outcome = await run(node, job)
    assert outcome.state is JobState.COMPLETED
    assert logs(sink(node).of(job.id), "stdout") == "app\nbee\n"


async def test_inline_file_at_root_refused(node: Node) -> None:
    job = docker_job("true", inputs=[inline_input("file", {"a": b"a"}, "/a.txt")])
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("input failed: ")


async def test_local_input_allowed_and_refused(node: Node, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "set").mkdir(parents=True)
    (allowed / "set" / "x.csv").write_text("1,2\n")
    (tmp_path / "secret.txt").write_text("no\n")
    (allowed / "escape").symlink_to(tmp_path / "secret.txt")
    ok = docker_job(
        "cat /inputs/set/x.csv",
        inputs=[
            {"source": {"type": "local", "params": {"path": str(allowed)}}, "target": "/inputs"}
        ],
    )
    assert (await run(node, ok)).state is JobState.COMPLETED
    assert logs(sink(node).of(ok.id), "stdout") == "1,2\n"
    for path in (tmp_path / "secret.txt", allowed / "escape", allowed / ".." / "secret.txt"):
        refused = docker_job(
            "true",
            inputs=[
                {"source": {"type": "local", "params": {"path": str(path)}}, "target": "/in/f"}
            ],
        )
        outcome = await run(node, refused)
        assert outcome.state is JobState.FAILED
        assert outcome.error is not None
        assert "not under a folder this node allows" in outcome.error


@pytest.fixture
async def web_server() -> AsyncIterator[str]:
    async def data(request: web.Request) -> web.Response:
        return web.Response(body=b"a,b\n1,2\n")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/data.csv")

    app = web.Application()
    app.router.add_get("/data.csv", data)
    app.router.add_get("/big", big)
    app.router.add_get("/redirect", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def open_port(node: Node, url: str) -> None:
    """Let url inputs reach ``url``'s port (only 80 and 443 are open by default)."""
    port = URL(url).port
    assert port is not None
    set_settings(node, node.settings.model_copy(update={"allowed_ports": [port]}))


def url_job(url: str) -> Job:
    return docker_job(
        "cat /inputs/data.csv",
        inputs=[{"source": {"type": "url", "params": {"url": url}}, "target": "/inputs/data.csv"}],
    )


async def test_url_input(node: Node, web_server: str) -> None:
    open_port(node, web_server)
    job = url_job(f"{web_server}/redirect")
    outcome = await run(node, job)
    assert outcome.state is JobState.COMPLETED
    assert logs(sink(node).of(job.id), "stdout") == "a,b\n1,2\n"


async def test_url_input_failures(node: Node, web_server: str) -> None:
    open_port(node, web_server)
    set_settings(node, node.settings.model_copy(update={"input_limit": 1000}))
    for path, expected in [("/big", "larger than the limit"), ("/missing", "HTTP 404")]:
        outcome = await run(node, url_job(web_server + path))
        assert outcome.state is JobState.FAILED
        assert outcome.error is not None
        assert outcome.error.startswith("input failed: ")
        assert expected in outcome.error


async def test_url_input_to_private_address_refused(node: Node, web_server: str) -> None:
    open_port(node, web_server)
    set_settings(node, node.settings.model_copy(update={"allow_private_addresses": False}))
    outcome = await run(node, url_job(f"{web_server}/data.csv"))
    assert outcome.error is not None
    assert outcome.error.startswith("input failed: ")
    assert "private" in outcome.error


async def test_url_input_to_a_node_address_refused(node: Node) -> None:
    """The attack: a url input fetched a host service on the node's eth0 address."""
    address = node_address()

    async def secret(request: web.Request) -> web.Response:
        return web.Response(text="host secret")

    async with http_server(secret, "0.0.0.0") as port:
        update = {"allow_private_addresses": False, "allowed_ports": [port]}
        set_settings(node, node.settings.model_copy(update=update))
        outcome = await run(node, url_job(f"http://{address}:{port}/data.csv"))
    assert outcome.error == (
        f"input failed: url input http://{address}:{port}/data.csv: "
        f"{address} is an address of this node (refused)"
    )


async def test_url_input_port_refused_unless_allowed(node: Node, web_server: str) -> None:
    port = URL(web_server).port
    outcome = await run(node, url_job(f"{web_server}/data.csv"))
    assert outcome.error is not None
    assert outcome.error.endswith(
        f"port {port} is not open to jobs (80, 443 and SHOAL_ALLOWED_PORTS are)"
    )


async def test_execution_timeout_kills(node: Node) -> None:
    job = docker_job("echo started; sleep 30", timeouts={"execution": 0.3})
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.exit_code == 143
    assert outcome.error == "timeout: execution exceeded 0.3s (ended by SIGTERM)"


async def test_a_job_that_ignores_sigterm_is_killed_after_its_grace(node: Node) -> None:
    job = docker_job(
        "trap '' TERM; echo started; sleep 30", timeouts={"execution": 0.3, "grace": 0.2}
    )
    outcome = await run(node, job)
    assert outcome.exit_code == 137
    assert (
        outcome.error == "timeout: execution exceeded 0.3s (ended by SIGKILL after the 0.2s grace)"
    )


async def test_stopped_job_runs_its_sigterm_trap_and_keeps_its_outputs(node: Node) -> None:
    job = docker_job("trap 'echo bye > /outputs/bye.txt; exit 0' TERM; echo started; sleep 30")
    control = JobControl()
    task = asyncio.create_task(run(node, job, control))
    await sink(node).wait_for(lambda e: e.job_id == job.id and e.kind == "log")
    control.stop("stopped by user")
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.state is JobState.STOPPED
    assert outcome.exit_code == 0
    assert outcome.error == (
        "stopped: stopped by user (ended by SIGTERM: exited with code 0 within the grace)"
    )
    result = next(e for e in sink(node).of(job.id) if e.kind == "result")
    assert untar(result.outputs["outputs"]) == {"bye.txt": b"bye\n"}


async def test_stop_running_job(node: Node) -> None:
    job = docker_job("echo started; sleep 30")
    control = JobControl()
    task = asyncio.create_task(run(node, job, control))
    await sink(node).wait_for(lambda e: e.job_id == job.id and e.kind == "log")
    control.stop("stopped by user")
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.state is JobState.STOPPED
    assert outcome.error == "stopped: stopped by user (ended by SIGTERM)"
    assert kinds(sink(node).of(job.id))[-1] == "state:stopped"


async def test_a_job_its_engine_stopped_fails_as_an_engine_failure(node: Node) -> None:
    job = docker_job("echo started > /outputs/a; echo started; sleep 30")
    task = asyncio.create_task(run(node, job))
    await sink(node).wait_for(lambda e: e.job_id == job.id and e.kind == "log")
    twin(node).stop_engine()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.state is JobState.FAILED
    assert outcome.exit_code == 143
    assert outcome.error == (
        "executor error: the Docker engine stopped or restarted while the job ran "
        "(ended by SIGTERM)"
    )
    assert explain("failed", outcome.error).category == "engine"
    assert kind_of(outcome.error) == "engine", "retried by the default policy"
    result = next(e for e in sink(node).of(job.id) if e.kind == "result")
    assert result.outputs == {}, "nothing is read from an engine that went away"


async def test_a_job_killed_by_its_own_signal_is_not_the_engine(node: Node) -> None:
    outcome = await run(node, docker_job("echo bye >&2; exit 143"))
    assert outcome.error == "exit code: ended by SIGTERM: bye"


async def test_stop_before_start_publishes_only_stopped(node: Node) -> None:
    job = docker_job("echo never")
    control = JobControl()
    control.stop("stopped by user")
    outcome = await run(node, job, control)
    assert outcome.state is JobState.STOPPED
    assert kinds(sink(node).of(job.id)) == ["state:stopped"]


async def test_requeue_on_shutdown_publishes_nothing_more(node: Node) -> None:
    job = docker_job("echo started; sleep 30")
    control = JobControl()
    task = asyncio.create_task(run(node, job, control))
    await sink(node).wait_for(lambda e: e.job_id == job.id and e.kind == "log")
    control.stop("executor shutting down", requeue=True)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.state is None
    assert kinds(sink(node).of(job.id)) == ["state:running", "log"]
    assert [signal for _, signal in twin(node).signals] == ["SIGTERM"], "a drain is graceful"


async def test_a_job_over_its_volume_limit_is_killed_at_once(
    node: Node, settings: ExecutorSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_settings(
        node, settings.model_copy(update={"volume_limit": 1000, "volume_check_seconds": 0.05})
    )
    job = docker_job("trap '' TERM; echo big > /outputs/a; cp /outputs/a /outputs/b; sleep 30")
    monkeypatch.setattr(twin(node), "volume_usage", fake_usage(2000))
    outcome = await run(node, job)
    assert outcome.error is not None
    assert outcome.error.startswith("output too large: the job's volumes")
    assert [signal for _, signal in twin(node).signals] == ["SIGKILL"]


async def test_cancelled_job_still_removes_container(node: Node) -> None:
    job = docker_job("echo started; sleep 30")
    task = asyncio.create_task(run(node, job))
    await sink(node).wait_for(lambda e: e.job_id == job.id and e.kind == "log")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(twin(node).removed) == 1


async def test_queue_timeout(node: Node) -> None:
    job = docker_job("echo never", timeouts={"queue": 10})
    outcome = await execute(job, utcnow() - timedelta(seconds=60), node, JobControl())
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("queue timeout: waited 60s")
    assert kinds(sink(node).of(job.id)) == ["state:failed"]


async def test_image_missing(node: Node) -> None:
    job = docker_job("true", image="shoal/nope:1")
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("image missing: shoal/nope:1 is not on this node")
    assert kinds(sink(node).of(job.id)) == ["state:running", "state:failed"]


async def test_native_job_with_an_image_not_allowed_refused(node: Node) -> None:
    """The attack: a native docker job naming any image, which would be pulled."""
    twin(node).pullable = frozenset({"evil/miner:1"})
    job = docker_job("true", image="evil/miner:1")
    outcome = await run(node, job)
    assert outcome.error is not None
    assert outcome.error.startswith("image not allowed: evil/miner:1 is not an image this node")
    assert "SHOAL_ALLOWED_IMAGES" in outcome.error
    assert kinds(sink(node).of(job.id)) == ["state:failed"]
    assert "evil/miner:1" not in twin(node).images, "never pulled"


async def test_missing_allowed_image_not_pulled_by_default(node: Node) -> None:
    twin(node).pullable = frozenset({"shoal/nope:2"})
    set_settings(node, ExecutorSettings(allowed_images=["shoal/nope:*"]))
    outcome = await run(node, docker_job("true", image="shoal/nope:2"))
    assert outcome.error == (
        "image missing: shoal/nope:2 is not on this node and the pull policy is 'never'"
    )
    assert "shoal/nope:2" not in twin(node).images


async def test_root_image_runs_as_nobody_owning_its_folders(node: Node) -> None:
    """The attack: a native docker job ran as uid 0 (its image's default user)."""
    job = docker_job(
        "echo hi > /outputs/a.txt",
        inputs=[inline_input("file", {"a": b"1"}, "/inputs/a")],
        outputs=[{"name": "outputs", "path": "/outputs"}],
    )
    assert (await run(node, job)).state is JobState.COMPLETED
    (box,) = twin(node).created.values()
    assert box.spec.user == "65534:65534"
    assert box.dirs == {"/code": 65534, "/outputs": 65534, "/inputs": 65534}


async def test_root_only_when_the_operator_allows_it(node: Node) -> None:
    set_settings(node, node.settings.model_copy(update={"allow_root": True}))
    assert (await run(node, docker_job("true"))).state is JobState.COMPLETED
    (box,) = twin(node).created.values()
    assert (box.spec.user, box.dirs) == ("", {})


async def test_full_network_refused(node: Node) -> None:
    job = docker_job("true", network={"type": "full"})
    outcome = await run(node, job)
    assert outcome.error is not None
    assert outcome.error.startswith("network not allowed: ")
    assert kinds(sink(node).of(job.id)) == ["state:failed"]


async def test_http_network_leases_and_releases(node: Node) -> None:
    job = docker_job("true", network={"type": "http", "domains": ["example.org"]})
    assert (await run(node, job)).state is JobState.COMPLETED
    assert gateway(node).leases == {job.id: ["example.org"]}
    assert gateway(node).released == [job.id]


async def test_untranslated_job_refused(node: Node) -> None:
    job = Job.model_validate({"tasks": [{"engine": {"type": "python", "params": {}}}]})
    outcome = await run(node, job)
    assert outcome.error is not None
    assert outcome.error.startswith("unsupported job: ")


async def test_output_over_the_limit_fails_the_job(node: Node) -> None:
    # /small is a volume of its own, owned by root: only a root job can write it
    set_settings(
        node, node.settings.model_copy(update={"job_output_limit": 1000, "allow_root": True})
    )
    job = docker_job(
        "cp /code/big /outputs/big; echo small > /small/s",
        inputs=[inline_input("file", {"big": b"x" * 200_000}, "/code/big")],
        outputs=[{"name": "outputs", "path": "/outputs"}, {"name": "small", "path": "/small"}],
    )
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("output too large: output 'outputs' (/outputs) left out")
    assert "1000 B output limit" in outcome.error
    result = next(e for e in sink(node).of(job.id) if e.kind == "result")
    assert result.truncated
    assert set(result.outputs) == {"small"}
    assert result.error is not None
    assert "output 'outputs' (/outputs) left out" in result.error


async def test_log_chunks_and_limit(node: Node) -> None:
    set_settings(
        node, node.settings.model_copy(update={"log_chunk_bytes": 256, "job_log_limit": 600})
    )
    job = docker_job(
        "cat /code/text", inputs=[inline_input("file", {"t": b"y" * 1000}, "/code/text")]
    )
    await run(node, job)
    chunks = [e for e in sink(node).of(job.id) if e.kind == "log"]
    assert all(len(c.data) <= 256 for c in chunks if c.stream == "stdout")
    assert logs(sink(node).of(job.id), "stdout") == "y" * 600
    assert "log limit" in logs(sink(node).of(job.id), "stderr")


async def test_output_folder_below_outputs_made_for_the_job_user(node: Node) -> None:
    twin(node).images[PYTHON_IMAGE] = ImageInfo(user="1000:1000")
    job = docker_job(
        "echo hi > /outputs/res/a.txt",
        image=PYTHON_IMAGE,
        outputs=[{"name": "outputs", "path": "/outputs"}, {"name": "res", "path": "/outputs/res"}],
    )
    outcome = await run(node, job)
    assert outcome.state is JobState.COMPLETED, outcome.error
    result = next(e for e in sink(node).of(job.id) if e.kind == "result")
    assert untar(result.outputs["res"]) == {"a.txt": b"hi\n"}
    (box,) = twin(node).created.values()
    assert box.dirs == {"/code": 1000, "/outputs": 1000, "/outputs/res": 1000}
    assert box.spec.volumes == ("/code", "/outputs")


async def test_output_needing_its_own_volume_fails_a_non_root_job(node: Node) -> None:
    twin(node).images[PYTHON_IMAGE] = ImageInfo(user="1000:1000")
    job = docker_job("true", image=PYTHON_IMAGE, outputs=[{"name": "results", "path": "/results"}])
    outcome = await run(node, job)
    assert outcome.state is JobState.FAILED
    assert outcome.error == (
        "output not writable: /results would be owned by root but the job runs as 1000; "
        "collect it under /outputs instead, e.g. -o results:/outputs/results"
    )
    assert kinds(sink(node).of(job.id)) == ["state:running", "state:failed"]
    assert twin(node).created == {}


class Delivery:
    """A compute delivery, as much of one as the executor uses."""

    def __init__(self, job: Job, tag: int) -> None:
        self.body = encode(ComputeRequest(job=job))
        self.delivery_tag = tag
        self.redelivered = False
        self.settled = asyncio.Event()
        self.outcome = ""

    async def _settle(self, outcome: str) -> None:
        self.outcome = outcome
        self.settled.set()

    async def ack(self) -> None:
        await self._settle("ack")

    async def nack(self, requeue: bool = True) -> None:
        await self._settle(f"nack(requeue={requeue})")

    async def reject(self, requeue: bool = False) -> None:
        await self._settle(f"reject(requeue={requeue})")

    def message(self) -> AbstractIncomingMessage:
        return cast(AbstractIncomingMessage, self)


async def test_duplicate_of_a_running_job_is_acked_and_skipped(node: Node) -> None:
    executor = Executor(node)
    job = docker_job("echo started; sleep 30")
    first, again = Delivery(job, 1), Delivery(job, 2)
    await executor.on_compute(first.message())
    await sink(node).wait_for(lambda e: e.job_id == job.id and e.kind == "log")
    await executor.on_compute(again.message())
    await asyncio.wait_for(again.settled.wait(), 5)
    assert again.outcome == "ack"
    assert not first.settled.is_set()
    executor.jobs.stop(job.id, "stopped by user")
    await asyncio.wait_for(first.settled.wait(), 10)
    assert first.outcome == "ack"
    states = [k for k in kinds(sink(node).of(job.id)) if k.startswith("state:")]
    assert states == ["state:running", "state:stopped"]
    assert executor.jobs.running == {}
    await asyncio.wait_for(asyncio.gather(*executor.jobs.tasks), 5)

    other = docker_job("echo one")
    busy = Executor(node)
    busy.jobs.slots = asyncio.Semaphore(0)  # no free slot: both copies wait
    copies = [Delivery(other, 4), Delivery(other, 5)]
    for copy in copies:
        await busy.on_compute(copy.message())
    await asyncio.wait_for(copies[1].settled.wait(), 5)
    assert copies[1].outcome == "ack"
    assert list(busy.jobs.running) == [other.id]
    busy.jobs.slots.release()
    await asyncio.wait_for(copies[0].settled.wait(), 10)
    assert [k for k in kinds(sink(node).of(other.id)) if k.startswith("state:")] == [
        "state:running",
        "state:completed",
    ]
