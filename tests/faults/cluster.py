"""A whole Shoal system in processes for the fault suite, and the audit that judges a case.

:class:`Cluster` runs ``shoal serve requester`` and ``shoal serve executor`` as child processes
on a private vhost and a fresh SQLite store, submits jobs over a direct broker connection, and
reads the store (read-only) to see what became of them. :meth:`Cluster.audit` checks every
accepted job: in the store (else *lost*), in a terminal state (else *stuck*), with a truthful
reason (a completed job exited as its script says, a failed or stopped one says why), its
script run to its end at most once (else *run twice*), and no container or proxy rule left on
the test's nodes (else *leaked*). A job container of a killed executor still running when
another executor's container of the same job started is recorded too (``overlaps``: *ran at
once*), but not held against the case: until the orphan is reaped (by the next executor of
its node, or by another of the node within ``SHOAL_REAP_EVERY`` periods) the job's new run
can only start beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker

from shoal.broker import connect
from shoal.executor.engines.docker.network import GatewayError, remove_proxy_rules
from shoal.executor.engines.docker.runner import LABEL_NODE
from shoal.model import Job
from shoal.requester.store.retries import split_key
from shoal.wire import Submission, SubmitReply, decode
from tests.executor.support import BASE_IMAGE, docker_job
from tests.requester.amqp import Client

from .overlaps import ContainerWatch

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "stopped"}


@dataclass
class Service:
    """One ``shoal serve ROLE`` child process and the JSON log events it wrote."""

    role: str
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                event = json.loads(raw)
            except ValueError:  # a traceback, or anything else not logged as JSON
                event = {"event": "stderr", "line": raw.decode(errors="replace").rstrip()}
            async with self.changed:
                self.events.append(event if isinstance(event, dict) else {})
                self.changed.notify_all()

    async def logged(self, name: str, within: float) -> None:
        """Wait until the service logged event ``name``; fails if it exits first."""

        def seen() -> bool:
            return self.process.returncode is not None or any(
                e.get("event") == name for e in self.events
            )

        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(seen)
        if not any(e.get("event") == name for e in self.events):
            raise AssertionError(f"{self.role} exited before {name}: {self.events[-5:]}")

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.alive:
            self.process.kill()
        await self.process.wait()

    async def stop(self, within: float = 60) -> None:
        """SIGTERM and wait (SIGKILL when it takes longer than ``within``)."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                await self.kill()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


@dataclass
class Audit:
    """What became of the accepted jobs of one case."""

    accepted: int = 0
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    run_twice: list[str] = field(default_factory=list)
    untruthful: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    ran_at_once: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.stuck or self.run_twice or self.untruthful or self.leaked)

    def __str__(self) -> str:
        """Every finding on a line of its own, evidence last (a failed case's message: pytest
        shortens a non-string message to one line)."""
        found = {
            "lost": self.lost,
            "stuck": self.stuck,
            "run twice": self.run_twice,
            "untruthful": self.untruthful,
            "leaked": self.leaked,
            "ran at once (not a failure)": self.ran_at_once,
        }
        lines = [f"accepted {self.accepted}, states {self.states}, reasons {self.reasons}"]
        lines += [f"{name} ({len(ids)}): {ids[:10]}" for name, ids in found.items() if ids]
        return "\n".join([*lines, "evidence:", *self.evidence])


def shell_job(script: str, **task: Any) -> Job:
    """A ``sh -c SCRIPT`` job on the test base image."""
    return docker_job(script, **task)


class Cluster:
    """A requester and executors in child processes on one vhost and one SQLite store."""

    def __init__(
        self,
        broker_url: str,
        folder: Path,
        service_url: str | None = None,
        docker_url: str | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.docker_url = docker_url
        self.service_url = service_url or broker_url
        self.folder = folder
        self.database = folder / "jobs.sqlite3"
        self.tag = uuid.uuid4().hex[:8]
        self.requester: Service | None = None
        self.executors: dict[str, Service] = {}
        self.replicas: list[Service] = []
        """Executors started beside another of their node (see :meth:`start_executor`)."""
        self.expected: dict[str, Callable[[dict[str, Any]], bool]] = {}
        self.services: list[Service] = []
        """Every service started, restarted ones included (their logs are kept)."""
        self.watch: ContainerWatch | None = None
        """The lives of the job containers, watched from the first executor's start on."""
        self._client: Client | None = None
        self._connection: Any = None

    def _env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SHOAL_BROKER_URL": self.service_url,
            "SHOAL_DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
            "SHOAL_LOG_FORMAT": "json",
            "SHOAL_PULL_POLICY": "never",
            "SHOAL_ALLOWED_IMAGES": BASE_IMAGE,
            "SHOAL_SHUTDOWN_GRACE": "5",
            **({"DOCKER_HOST": self.docker_url} if self.docker_url else {}),
            **extra,
        }

    async def _spawn(self, role: str, ready: str, env: dict[str, str]) -> Service:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal.client.main",
            "serve",
            role,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        service = Service(role, process)
        service.reader = asyncio.create_task(service.read())
        self.services.append(service)
        await service.logged(ready, 90)
        return service

    async def start_requester(self) -> Service:
        self.requester = await self._spawn("requester", "requester.started", self._env())
        return self.requester

    def node(self, index: int) -> str:
        return f"faults-{self.tag}-{index}"

    async def start_executor(
        self, index: int, slots: int = 2, *, beside: bool = False, **extra: str
    ) -> Service:
        """Start (or restart: the same node reaps its predecessor's containers) executor
        ``index``; ``beside``: another executor of that node, next to the one started before
        (a replica, as ``docker compose --scale`` makes)."""
        env = self._env(SHOAL_NODE_ID=self.node(index), SHOAL_SLOTS=str(slots), **extra)
        if self.watch is None:
            self.watch = ContainerWatch(self.docker_url, f"faults-{self.tag}-")
            self.watch.start()
        service = await self._spawn("executor", "executor.ready", env)
        if beside:
            self.replicas.append(service)
        else:
            self.executors[self.node(index)] = service
        return service

    async def client(self) -> Client:
        if self._client is None:
            self._connection = await connect(self.broker_url, name="faults-client")
            self._client = await Client.open(self._connection)
        return self._client

    async def submit(
        self, job: Job, expect: Callable[[dict[str, Any]], bool] | None = None
    ) -> asyncio.Future[bytes]:
        """Publish a submission (confirmed by the broker); a future of the reply body.
        ``expect`` judges the finished job's row (default: completed with exit code 0)."""
        future = await (await self.client()).send(Submission(job=job))
        assert future is not None
        self.expected[job.id] = expect or completed_ok
        return future

    async def publish(self, job: Job) -> str:
        """Publish a submission (confirmed by the broker) nobody waits on; the job's ID (a
        docker job runs under its own ID)."""
        await (await self.client()).send(Submission(job=job), reply=False)
        self.expected[job.id] = completed_ok
        return job.id

    async def accepted(self, replies: list[asyncio.Future[bytes]], within: float) -> list[str]:
        """The job IDs the requester answered with (every reply must come)."""
        async with asyncio.timeout(within):
            bodies = await asyncio.gather(*replies)
        ids = [decode(body, SubmitReply).job_id for body in bodies]
        assert all(ids), [
            decode(b, SubmitReply) for b in bodies if not decode(b, SubmitReply).job_id
        ]
        return [str(i) for i in ids]

    def rows(self, query: str, *args: object) -> list[sqlite3.Row]:
        if not self.database.exists():
            return []
        with contextlib.closing(
            sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
        ) as db:
            db.row_factory = sqlite3.Row
            return list(db.execute(query, args))

    def states(self) -> dict[str, str]:
        return {r["id"]: r["state"] for r in self.rows("SELECT id, state FROM jobs")}

    async def stored(self, at_least: int, within: float) -> int:
        """How many jobs the store holds once it holds ``at_least`` (or at the deadline)."""
        return await self._count_until(len, at_least, within)

    async def ended(self, at_least: int, within: float) -> int:
        """How many jobs have ended once ``at_least`` have (or at the deadline)."""
        return await self._count_until(
            lambda states: sum(state in TERMINAL for state in states.values()), at_least, within
        )

    async def _count_until(
        self, count: Callable[[dict[str, str]], int], at_least: int, within: float
    ) -> int:
        """``count`` of the jobs' states once it reaches ``at_least`` (or at the deadline)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        found = count(self.states())
        while found < at_least and loop.time() < end:
            await asyncio.sleep(0.05)
            found = count(self.states())
        return found

    async def settle(self, ids: list[str], idle: float) -> None:
        """Wait until every job of ``ids`` is terminal in the store, or until none has ended
        for ``idle`` seconds (the test's own timeout bounds the whole wait): a slow machine
        gets the time it needs, a stuck job is still found ``idle`` seconds after the last
        job ended."""
        loop = asyncio.get_running_loop()
        ended, last_change = -1, loop.time()
        while loop.time() < last_change + idle:
            states = self.states()
            now_ended = sum(states.get(i) in TERMINAL for i in ids)
            if now_ended == len(ids):
                return
            if now_ended != ended:
                ended, last_change = now_ended, loop.time()
            await asyncio.sleep(0.5)

    async def wait_state(self, job_id: str, wanted: set[str], within: float) -> str | None:
        """The job's state once it is one of ``wanted`` (None on the deadline)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            found = self.states().get(job_id)
            if found in wanted:
                return found
            await asyncio.sleep(0.05)
        return None

    def story(self, job_ids: list[str]) -> list[str]:
        """What the services logged about ``job_ids`` and the runs the store holds: the
        evidence for a failed audit."""
        services = [self.requester, *self.executors.values(), *self.replicas]
        lines = [
            f"{s.role}: {json.dumps(e)[:300]}"
            for s in services
            if s is not None
            for e in s.events
            if e.get("job_id") in job_ids or job_ids[0] in json.dumps(e)
        ]
        for job_id in job_ids:
            runs = self.rows("SELECT * FROM executions WHERE job_id = ?", job_id)
            lines += [f"run: {dict(r)}" for r in runs]
        return lines

    async def shutdown(self) -> None:
        """SIGTERM every service still running (executors first)."""
        for service in [*self.executors.values(), *self.replicas]:
            await service.stop()
        if self.requester is not None:
            await self.requester.stop()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        if self.watch is not None:
            await self.watch.close()
        self.write_logs()

    def write_logs(self) -> None:
        """Each service's log events as JSON lines in the case's folder (for a failed case)."""
        for number, service in enumerate(self.services):
            path = self.folder / f"{number:02d}-{service.role}.jsonl"
            path.write_text("".join(json.dumps(e) + "\n" for e in service.events))

    async def clear_leftovers(self) -> list[str]:
        """Remove the containers still labelled for this cluster's nodes and the proxy rules
        of its executors still in ``INPUT``; returns what was left (rules as
        ``rule: -A INPUT …``)."""
        docker = aiodocker.Docker(url=self.docker_url)
        found: list[str] = []
        try:
            for node in self.executors:
                labelled = await docker.containers.list(
                    all=True, filters={"label": [f"{LABEL_NODE}={node}"]}
                )
                for container in labelled:
                    found.append(str(container.id))
                    with contextlib.suppress(aiodocker.DockerError):
                        await container.delete(force=True)
        finally:
            await docker.close()
        rules: list[str] = []
        for node in self.executors:
            with contextlib.suppress(GatewayError):
                rules += await remove_proxy_rules(node)
        return sorted(found) + [f"rule: {rule}" for rule in rules]

    async def audit(self, ids: list[str]) -> Audit:
        """Judge every accepted job (call after :meth:`shutdown`)."""
        report = Audit(accepted=len(ids))
        jobs = {r["id"]: dict(r) for r in self.rows("SELECT * FROM jobs")}
        finished: dict[tuple[str, int], int] = {}
        for run in self.rows("SELECT job_id, executor, exit_code FROM executions"):
            if run["exit_code"] is not None:
                key = (run["job_id"], split_key(run["executor"])[1])  # a retry is no rerun
                finished[key] = finished.get(key, 0) + 1
        twice = {job_id for (job_id, _), count in finished.items() if count > 1}
        for job_id in ids:
            row = jobs.get(job_id)
            if row is None:
                report.lost.append(job_id)
                continue
            report.states[row["state"]] = report.states.get(row["state"], 0) + 1
            if row["state"] in ("failed", "stopped"):
                reason = f"{row['state']}: {str(row['error'])[:160]}"
                report.reasons[reason] = report.reasons.get(reason, 0) + 1
            if row["state"] not in TERMINAL:
                report.stuck.append(f"{job_id}: {row['state']}")
            elif not truthful(row, self.expected.get(job_id, completed_ok)):
                report.untruthful.append(f"{job_id}: {row['state']} {row['error']!r}")
            if job_id in twice:
                report.run_twice.append(job_id)
        troubled = (report.stuck + report.run_twice + report.untruthful)[:2]
        report.evidence = self.story([t.split(":")[0] for t in troubled]) if troubled else []
        report.leaked = await self.clear_leftovers()
        report.ran_at_once = self.watch.overlaps() if self.watch is not None else []
        return report


def completed_ok(row: dict[str, Any]) -> bool:
    """The default expectation: the job completed with exit code 0."""
    return bool(row["state"] == "completed" and row["exit_code"] == 0)


def truthful(row: dict[str, Any], expect: Callable[[dict[str, Any]], bool]) -> bool:
    """A terminal row tells the truth: as expected, or failed/stopped with a reason."""
    if expect(row):
        return True
    return row["state"] in ("failed", "stopped") and bool(row["error"])
