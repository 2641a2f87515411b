"""Everyday mistakes walked through the ``shoal`` command: each is one line ``Type: message``
on stderr, nothing on stdout, and its documented exit code.

Each row is what a user types (and the files it needs), the ``Type`` the line must start
with, the exit code, and a fragment the message must hold. Most rows need no services; the
last table's rows run against a real RabbitMQ (a private vhost) and, where they say so, an
in-process requester.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.requester.service import Requester
from tests.services import rabbit_vhost

from .conftest import ROOT, Done, Shoal
from .fake_executor import fake_executor
from .test_cli import RUN, succeed

USAGE, FAILED, UNAVAILABLE, IO, INTERNAL = 2, 1, 3, 74, 70
NO_JOB = "j-00000000-0000-4000-8000-000000000000"
DEAD_URL = "amqp://guest:guest@127.0.0.1:1/"
DEAD = f"--broker {DEAD_URL}"
CONFIG = '[profiles.lab]\nbroker_url = "amqp://guest:guest@127.0.0.1:1/"\n'


@dataclass(frozen=True)
class Mistake:
    """``shoal ARGV`` and what it must answer."""

    argv: str
    kind: str
    code: int
    says: str
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    needs: str = ""
    """For the online rows: ``empty`` (a vhost without Shoal's queues), ``topology`` (the
    queues, no requester), ``requester``, or ``job`` (a completed job, ``{job}`` in argv)."""

    def __str__(self) -> str:
        return self.argv


OFFLINE = [
    # shoal exec
    Mistake("exec", "UsageError", USAGE, "missing job type"),
    Mistake("exec -- python a.py", "UsageError", USAGE, "missing job type"),
    Mistake("exec -v python", "UsageError", USAGE, "expected a job type before '-v'"),
    Mistake("exec ruby -- ruby a.rb", "UnknownJobTypeError", USAGE, "supported types: duckdb"),
    Mistake("exec python --network internet -- x", "UsageError", USAGE, "'internet' is not one"),
    Mistake("exec python --memory lots -- x", "UsageError", USAGE, "--memory: invalid memory"),
    Mistake("exec python --cpu fast -- x", "UsageError", USAGE, "--cpu: invalid CPU amount"),
    Mistake("exec python --timeout soon -- x", "UsageError", USAGE, "--timeout: invalid duration"),
    Mistake("exec python --timeout", "UsageError", USAGE, "'--timeout' requires an argument"),
    Mistake("exec python --queue-timeout -5s -- x", "UsageError", USAGE, "--queue-timeout"),
    Mistake("exec python --retries many -- x", "UsageError", USAGE, "--retries: expected"),
    Mistake("exec python --retry-on exit -- x", "UsageError", USAGE, "need --retries N"),
    Mistake("exec python --retries 2 --retry-on oom -- x", "UsageError", USAGE, "--retry-on"),
    Mistake("exec python --code nope.py -- x", "CodeArchiveError", USAGE, "no such file"),
    Mistake("exec python -i nope.csv -- x", "CodeArchiveError", USAGE, "-i nope.csv: no such"),
    Mistake(
        "exec python -i src=a.csv,dset=/inputs/a.csv -- x",
        "UsageError",
        USAGE,
        "unknown key 'dset'; use src=PATH|URL",
        files={"a.csv": "a\n"},
    ),
    Mistake("exec python -i s3://bucket/key -- x", "UsageError", USAGE, "unsupported scheme"),
    Mistake("exec python -i dst=/inputs/x -- x", "UsageError", USAGE, "missing src=PATH|URL"),
    Mistake("exec python -o nocolon -- x", "UsageError", USAGE, "expected name:/path"),
    Mistake("exec python -o res:rel -- x", "InvalidJobError", USAGE, "must be an absolute path"),
    Mistake("exec python -e NOVALUE -- x", "UsageError", USAGE, "expected NAME=value"),
    Mistake("exec python -l team -- x", "UsageError", USAGE, "expected key=value"),
    Mistake("exec python -v -- python a.py", "UsageError", USAGE, "unknown option -v"),
    Mistake("exec python -c pass", "UsageError", USAGE, "put the program's own flags after --"),
    Mistake("exec python --verbose -- x", "UsageError", USAGE, "unknown option --verbose"),
    Mistake("exec python --dryrun -- x", "UsageError", USAGE, "did you mean --dry-run?"),
    Mistake("exec python --netwrok none -- x", "UsageError", USAGE, "did you mean --network?"),
    Mistake("exec python --arguments=x -- x", "TemplateError", USAGE, "is set by shoal exec"),
    Mistake("exec duckdb --version=1 -- -c 'select 1'", "TemplateError", USAGE, "no option"),
    Mistake("exec python --domain pypi.org --network none -- x", "UsageError", USAGE, "--domain"),
    Mistake("exec python --wait-timeout 5m -- x", "UsageError", USAGE, "needs --wait"),
    Mistake("exec python --wait --wait-timeout soon -- x", "UsageError", USAGE, "--wait-timeout"),
    Mistake("exec python --idempotency-key", "UsageError", USAGE, "requires an argument"),
    Mistake("exec python --dry-run --output-format xml", "UsageError", USAGE, "'xml' is not one"),
    # --dry-run refuses what a submit refuses
    Mistake("exec python --dry-run", "TranslationError", USAGE, "python job has nothing to run"),
    Mistake("exec python --version=3.9 --dry-run -- x", "TranslationError", USAGE, "'3.9'"),
    Mistake("exec python --dry-run --wait-timeout 1m -- x", "UsageError", USAGE, "needs --wait"),
    Mistake("exec python --memory 100Gi --dry-run -- x", "UnsupportedError", USAGE, "at most 4"),
    Mistake(
        "exec python --memory 8Gi --dry-run -- x",
        "UnsupportedError",
        USAGE,
        "at most 2",
        env={"SHOAL_MAX_JOB_MEMORY": "2Gi"},
    ),
    Mistake(
        "exec python --dry-run -l note=" + "x" * 65537 + " -- x",
        "TooLargeError",
        USAGE,
        "at most 65536 bytes",
    ),
    # commands and their arguments
    Mistake("nope", "UsageError", USAGE, "no such command 'nope'"),
    Mistake("--frobnicate job list", "UsageError", USAGE, "no such option"),
    Mistake("job lsit", "UsageError", USAGE, "no such command 'lsit' — did you mean 'list'?"),
    Mistake("job describe", "UsageError", USAGE, "missing argument 'JOB_ID'"),
    Mistake("job describe a b", "UsageError", USAGE, "unexpected extra argument (b)"),
    Mistake("job logs", "UsageError", USAGE, "missing argument"),
    Mistake("job get", "UsageError", USAGE, "missing argument"),
    Mistake("job stop", "UsageError", USAGE, "missing argument"),
    Mistake("job wait", "UsageError", USAGE, "give job IDs or --batch"),
    Mistake("job list --limit 0", "UsageError", USAGE, "0 is not in the range"),
    Mistake("job list --limit many", "UsageError", USAGE, "'many' is not a valid integer"),
    Mistake("job list --output-format xml", "UsageError", USAGE, "'xml' is not one of"),
    Mistake("job list -l team", "UsageError", USAGE, "'team' is not k=v"),
    Mistake("job list --since garbage", "UsageError", USAGE, "--since: 'garbage' is neither"),
    Mistake("job summary -l team", "UsageError", USAGE, "'team' is not k=v"),
    Mistake("job summary --since garbage", "UsageError", USAGE, "--since: 'garbage' is neither"),
    Mistake("job rerun j-1 --wait-timeout soon", "UsageError", USAGE, "--wait-timeout"),
    Mistake("job rerun j-1 --wait-timeout 5m", "UsageError", USAGE, "needs --wait"),
    Mistake("job run --batch b.jsonl --wait-timeout 5m", "UsageError", USAGE, "for one job"),
    Mistake("exec python --each '*.csv' --wait-timeout 5m -- x", "UsageError", USAGE, "one job"),
    Mistake("job describe j-1 --output-format csv", "UsageError", USAGE, "'csv' is not one"),
    Mistake("job get j-1 --max-size lots", "UsageError", USAGE, "--max-size"),
    Mistake("job get j-1 --output-dir out", "UsageError", USAGE, "'out' is a file", {"out": "x"}),
    Mistake("job wait j-1 --wait-timeout soon", "UsageError", USAGE, "--wait-timeout"),
    Mistake("serve nothing", "UsageError", USAGE, "no such command 'nothing'"),
    Mistake(
        "serve executor",
        "UsageError",
        USAGE,
        "SHOAL_SLOTS: Input should be a valid integer",
        env={"SHOAL_SLOTS": "many"},
    ),
    Mistake(
        "serve requester",
        "UsageError",
        USAGE,
        "SHOAL_SWEEP_INTERVAL: Input should be greater",
        env={"SHOAL_SWEEP_INTERVAL": "-1"},
    ),
    Mistake("--broker rabbit serve executor", "UsageError", USAGE, "--broker: 'rabbit' is not"),
    Mistake(
        "--profile lbs serve requester",
        "UsageError",
        USAGE,
        "no profile 'lbs' in config.toml",
        files={"config.toml": CONFIG},
        env={"SHOAL_CONFIG": "config.toml"},
    ),
    Mistake("broker add-user", "UsageError", USAGE, "missing argument"),
    Mistake("broker setup --secrets-dir s", "UsageError", USAGE, "did you mean '--secrets'?"),
    Mistake(
        "broker add-user 'bad name!' --rabbitmqctl ./none --secrets s",
        "UsageError",
        USAGE,
        "user name 'bad name!': use letters",
    ),
    Mistake(
        "broker setup --rabbitmqctl ./none --secrets s",
        "UnavailableError",
        UNAVAILABLE,
        "./none not found: run this on the broker's host",
    ),
    Mistake("version now", "UsageError", USAGE, "unexpected extra argument (now)"),
    # where the broker is
    Mistake("--broker", "UsageError", USAGE, "'--broker' requires an argument"),
    Mistake("--broker localhost:5672 job list", "UsageError", USAGE, "'localhost:5672' is not an"),
    Mistake("--broker amqp://h:99999/ job list", "UsageError", USAGE, "bad broker URL"),
    Mistake("--broker ftp://h/ exec python -- x", "UsageError", USAGE, "not an AMQP URL"),
    Mistake(
        "job list",
        "UsageError",
        USAGE,
        "SHOAL_BROKER_URL: 'rabbit:5672' is not an AMQP URL",
        env={"SHOAL_BROKER_URL": "rabbit:5672"},
    ),
    Mistake(
        "--profile lbs job list",
        "UsageError",
        USAGE,
        "no profile 'lbs' in config.toml; profiles: lab",
        files={"config.toml": CONFIG},
        env={"SHOAL_CONFIG": "config.toml"},
    ),
    Mistake(
        "job list",
        "UsageError",
        USAGE,
        "config file config.toml is not valid TOML",
        files={"config.toml": "[profiles.lab\n"},
        env={"SHOAL_CONFIG": "config.toml"},
    ),
    Mistake("--profile lab job list", "UsageError", USAGE, "no config file at"),
    Mistake("job list", "UsageError", USAGE, "SHOAL_RPC_TIMEOUT", env={"SHOAL_RPC_TIMEOUT": "x"}),
    Mistake(
        "exec python -- x",
        "UsageError",
        USAGE,
        "not a JSON list",
        env={"SHOAL_TEMPLATE_DIRS": "[1"},
    ),
    Mistake(f"{DEAD} job list", "UnavailableError", UNAVAILABLE, "cannot reach RabbitMQ at"),
    Mistake(f"{DEAD} exec python -- x", "UnavailableError", UNAVAILABLE, "cannot reach RabbitMQ"),
    Mistake(f"{DEAD} job wait {NO_JOB}", "UnavailableError", UNAVAILABLE, "is it running?"),
    Mistake(
        f"--profile lab job describe {NO_JOB}",
        "UnavailableError",
        UNAVAILABLE,
        "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/",
        files={"config.toml": CONFIG},
        env={"SHOAL_CONFIG": "config.toml"},
    ),
]

ONLINE = [
    # a broker whose vhost has no Shoal topology: no requester ever started there
    Mistake("job list", "UnavailableError", UNAVAILABLE, "no requester has started", needs="empty"),
    Mistake("exec python -- x", "UnavailableError", UNAVAILABLE, "no Shoal queues", needs="empty"),
    # the topology, but no requester answering
    Mistake(
        f"job describe {NO_JOB}", "UnavailableError", UNAVAILABLE,
        "no requester answered within 1s", env={"SHOAL_RPC_TIMEOUT": "1"}, needs="topology",
    ),
    Mistake(
        "--broker amqp://guest:wrong@127.0.0.1:5672/ job list", "UnavailableError", UNAVAILABLE,
        "check the user and password", needs="topology",
    ),
    # a requester that says no
    Mistake(f"job describe {NO_JOB}", "NotFoundError", USAGE, "no job", needs="requester"),
    Mistake(f"job logs {NO_JOB}", "NotFoundError", USAGE, "no job", needs="requester"),
    Mistake(f"job get {NO_JOB}", "NotFoundError", USAGE, "no job", needs="requester"),
    Mistake(f"job stop {NO_JOB}", "NotFoundError", USAGE, "no job", needs="requester"),
    Mistake(
        "exec python --version=9.9 -- x", "TranslationError", USAGE, "'9.9' is not supported",
        needs="requester",
    ),
    # a completed job with outputs
    Mistake(
        "job get {job} --output-dir /proc/x", "UsageError", USAGE,
        "cannot create folder '/proc/x' for the outputs", needs="job",
    ),
]  # fmt: skip


def check(done: Done, mistake: Mistake) -> None:
    """One line ``Type: message`` holding ``mistake.says``, nothing on stdout, the code."""
    assert done.out == "", done.out
    assert done.err.count("\n") == 1, done.err
    assert done.err.endswith("\n"), done.err
    assert re.match(rf"{mistake.kind}: \S", done.err), done.err
    assert mistake.says in done.err, done.err
    assert done.code == mistake.code, done.err


def test_the_tables_are_big_enough() -> None:
    assert len(OFFLINE) + len(ONLINE) >= 50
    assert {m.needs for m in ONLINE} == {"empty", "topology", "requester", "job"}
    assert len({(m.argv, tuple(m.env.items())) for m in OFFLINE + ONLINE}) == len(OFFLINE + ONLINE)


@pytest.mark.parametrize("mistake", OFFLINE, ids=str)
def test_offline_mistake(mistake: Mistake, tmp_path: Path) -> None:
    for name, text in mistake.files.items():
        (tmp_path / name).write_text(text)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        # No broker answers, so a check made only after connecting fails the row (exit 3);
        # a row with a config file keeps the file's broker (the variable would win over it).
        **({} if "SHOAL_CONFIG" in mistake.env else {"SHOAL_BROKER_URL": DEAD_URL}),
        **mistake.env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "shoal.client.main", *shlex.split(mistake.argv)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    check(Done(done.returncode, done.stdout, done.stderr), mistake)


@pytest.fixture
def empty_vhost() -> Iterator[str]:
    """A vhost where no requester ever declared Shoal's exchanges and queues."""
    with rabbit_vhost() as url:
        yield url


@pytest.fixture
async def completed_job(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection
) -> str:
    """The ID of a job that completed with outputs."""
    async with fake_executor(connection, succeed):
        done = await shoal(*RUN[:2], "--wait", "--id-only", *RUN[2:])
    assert done.code == 0, done.err
    return done.out.strip()


def online(needs: str) -> list[Mistake]:
    """The online rows that need ``needs``."""
    return [mistake for mistake in ONLINE if mistake.needs == needs]


@pytest.mark.rabbitmq
@pytest.mark.parametrize("mistake", online("empty"), ids=str)
async def test_on_a_vhost_without_shoal(mistake: Mistake, shoal: Shoal, empty_vhost: str) -> None:
    argv = shlex.split(mistake.argv)
    check(await shoal(*argv, SHOAL_BROKER_URL=empty_vhost, **mistake.env), mistake)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("mistake", online("topology"), ids=str)
async def test_without_a_requester(
    mistake: Mistake, shoal: Shoal, connection: AbstractRobustConnection
) -> None:
    check(await shoal(*shlex.split(mistake.argv), **mistake.env), mistake)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("mistake", online("requester"), ids=str)
async def test_with_a_requester(mistake: Mistake, shoal: Shoal, requester: Requester) -> None:
    check(await shoal(*shlex.split(mistake.argv), **mistake.env), mistake)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("mistake", online("job"), ids=str)
async def test_with_a_completed_job(mistake: Mistake, shoal: Shoal, completed_job: str) -> None:
    argv = shlex.split(mistake.argv.format(job=completed_job))
    check(await shoal(*argv, **mistake.env), mistake)


def _raising(error: BaseException) -> object:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (
            ValueError("host and port\nwere not specified"),
            "InternalError: ValueError: host and port were not specified (a bug in shoal; "
            "SHOAL_DEBUG=1 shows the traceback)\n",
            INTERNAL,
        ),
        (
            OSError(28, "No space left on device", "out/a.csv"),
            "OSError: No space left on device: out/a.csv\n",
            IO,
        ),
        (KeyboardInterrupt(), "Interrupted: stopped before the command finished\n", 130),
    ],
)
def test_the_last_resort(
    error: BaseException,
    line: str,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from shoal.client import main, output

    monkeypatch.delenv("SHOAL_DEBUG", raising=False)
    monkeypatch.setattr(output, "echo_data", _raising(error))
    assert main.main(["exec", "python", "--dry-run", "--", "python", "a.py"]) == code
    # click writes a newline on Ctrl-C, to end the line the terminal echoed ^C on
    assert capsys.readouterr().err.lstrip("\n") == line


def test_shoal_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shoal.client import main, output

    monkeypatch.setenv("SHOAL_DEBUG", "1")
    monkeypatch.setattr(output, "echo_data", _raising(ValueError("boom")))
    assert main.main(["exec", "python", "--dry-run", "--", "python", "a.py"]) == INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith(
        "ValueError: boom\nInternalError: ValueError: boom (a bug in shoal; "
        "SHOAL_DEBUG=1 shows the traceback)\n"
    )


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    "argv",
    [
        "exec python --version=9.9 -- x",
        "exec python",
        "exec python --wait-timeout 1m -- x",
        "exec python -l note=" + "x" * 65537 + " -- x",
        "exec python -o res:rel -- x",
    ],
    ids=lambda argv: argv[:40],
)
async def test_dry_run_refuses_what_a_submit_refuses(
    argv: str, shoal: Shoal, requester: Requester
) -> None:
    words = shlex.split(argv)
    submitted = await shoal(*words)
    dry = await shoal(*words[:2], "--dry-run", *words[2:])
    assert submitted.code == dry.code == USAGE
    assert dry.err == submitted.err
    assert dry.out == submitted.out == ""


def test_the_readme_error_examples_are_what_the_cli_prints(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Errors and exit codes", 1)[1].split("```console\n", 1)[1]
    lines = section.split("```", 1)[0].splitlines()
    examples = list(zip(lines[::2], lines[1::2], strict=True))
    assert examples
    for command, line in examples:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "shoal.client.main",
                *shlex.split(command.removeprefix("$ shoal ")),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
            timeout=60,
            check=False,
        )
        assert done.stderr == line + "\n"


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["exec", "python", "--dry-run", "--output-format", "json", "--", "python", "x"]],
    ids=["help", "dry-run"],
)
def test_a_closed_stdout_ends_quietly_with_141(argv: list[str]) -> None:
    """``shoal … | head -1``: the reader left; no line, exit 128 + SIGPIPE as a shell reports."""
    with subprocess.Popen(
        [sys.executable, "-m", "shoal.client.main", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as shoal:
        assert shoal.stdout is not None
        assert shoal.stderr is not None
        shoal.stdout.close()
        assert shoal.wait(timeout=60) == 141
        assert shoal.stderr.read() == b""
