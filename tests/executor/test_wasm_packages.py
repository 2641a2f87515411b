"""Pure-Python requirements of ``python --runtime=wasm`` jobs: installed by the executor's pip
from a package index served on this host into a cached folder the job imports from, or
refused naming the package. The interpreter's first run on a node compiles it (minutes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.executor.engines.wasm.engine import WasmEngine
from shoal.executor.engines.wasm.packages import (
    PREFIX,
    PackageCache,
    guest_markers,
    job_requirements,
    parse_requirements,
    pip_failure,
    requirement_lines,
)
from shoal.executor.events import MemoryEventSink
from shoal.executor.execution import Node
from shoal.executor.failures import JobError
from shoal.executor.settings import ExecutorSettings
from shoal.model import JobState
from tests.images.support import make_tinydep, make_wheel, serve_directory

from .support import untar
from .test_wasm_python import python_job, run

pytestmark = pytest.mark.timeout(1200)

SHOWS = b"import tinydep\nprint(tinydep.VALUE, tinydep.__file__)\n"
INSTALLED = "tinydep-1.0 /usr/local/lib/python3.15/site-packages/tinydep/__init__.py\n"
NATIVE = "a WASI interpreter cannot load native code: run it with --runtime=docker"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A package index on 127.0.0.1: tinydep; usesnumpy (numpy>=2 and tinydep); nativedep
    (a platform wheel only); sdistdep (an sdist only); needsnative (pure, needs nativedep)."""
    simple = tmp_path_factory.mktemp("index") / "simple"
    make_tinydep(simple / "tinydep")
    uses = "import numpy, tinydep\nVALUE = f'{tinydep.VALUE} numpy-{numpy.__version__}'\n"
    make_wheel(simple / "usesnumpy", "usesnumpy", "1.0", uses, requires=["numpy>=2", "tinydep"])
    make_wheel(simple / "needsnative", "needsnative", "1.0", "", requires=["nativedep"])
    native = make_wheel(simple / "nativedep", "nativedep", "1.0", "")
    native.rename(native.with_name("nativedep-1.0-cp315-cp315-manylinux_2_17_x86_64.whl"))
    (simple / "sdistdep").mkdir()
    (simple / "sdistdep" / "sdistdep-1.0.tar.gz").write_bytes(b"")
    with serve_directory(simple.parent, "127.0.0.1") as url:
        yield f"{url}/simple"


def node(index: str, folder: Path) -> Node:
    """An executor serving wasm whose pip uses ``index`` and keeps its sets in ``folder``."""
    settings = ExecutorSettings(node_id="unit", log_flush_seconds=0.05, wasm_package_index=index)
    engine = WasmEngine(settings)
    engine.packages = PackageCache(settings, folder)
    return Node(settings, {engine.name: engine}, MemoryEventSink(), "exec-unit")


def packages(on: Node) -> PackageCache:
    engine = on.engines["wasm"]
    assert isinstance(engine, WasmEngine)
    return engine.packages


def kept(folder: Path) -> list[str]:
    """The folders in ``folder`` (installed sets and partial ones)."""
    return [p.name for p in folder.iterdir() if p.is_dir()]


def installed(folder: Path) -> list[str]:
    """The top-level entries of the one installed set in ``folder``."""
    (found,) = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    return sorted(p.name for p in found.iterdir())


async def test_a_pure_python_requirement_is_installed_once_and_reused(
    index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/nothing")  # the executor's own
    on, beside = node(index, tmp_path), node(index, tmp_path)  # two executors of a node
    first = {"app.py": SHOWS, "requirements.txt": b"tinydep==1.0\n"}
    same = {"app.py": SHOWS, "requirements.txt": b"# the same set\nTinyDep == 1.0  \n"}
    env = {"env": {"PIP_INDEX_URL": "http://127.0.0.1:9/nothing"}}
    ran = await asyncio.gather(
        run(on, python_job(first, "app.py", **env)),
        run(on, python_job(same, "app.py")),
        run(beside, python_job(same, "app.py")),
    )
    for outcome, stdout in ran:
        assert (outcome.state, outcome.error, stdout) == (JobState.COMPLETED, None, INSTALLED)
    installs = packages(on).installs + packages(beside).installs
    assert installs == 1, "concurrent jobs with one set run pip once"
    assert installed(tmp_path) == ["bin", "tinydep", "tinydep-1.0.dist-info"]
    restarted = node(index, tmp_path)
    outcome, stdout = await run(restarted, python_job(first, "/code/app.py"))
    assert (outcome.state, stdout) == (JobState.COMPLETED, INSTALLED)
    assert packages(restarted).installs == 0, "a later executor reuses the folder"


async def test_built_in_packages_are_never_installed(index: str, tmp_path: Path) -> None:
    on = node(index, tmp_path)
    app = b'"""Uses usesnumpy.\n\n    pip install usesnumpy\n"""\nimport usesnumpy\n'
    app += b"print(usesnumpy.VALUE)\n"
    outcome, stdout = await run(on, python_job({"app.py": app}, "app.py"))
    assert (outcome.state, outcome.error) == (JobState.COMPLETED, None)
    assert stdout == "tinydep-1.0 numpy-2.5.2\n"
    assert installed(tmp_path) == [
        "bin", "tinydep", "tinydep-1.0.dist-info", "usesnumpy", "usesnumpy-1.0.dist-info"
    ]  # fmt: skip
    built_in = {"app.py": b"import numpy\n", "requirements.txt": b"numpy>=2\npandas[excel]\n"}
    outcome, _ = await run(on, python_job(built_in, "app.py"))
    assert (outcome.state, packages(on).installs) == (JobState.COMPLETED, 1), "pip not run"
    older = {"app.py": b"", "requirements.txt": b"numpy<2\n"}
    outcome, _ = await run(on, python_job(older, "app.py"))
    assert outcome.error == (
        "dependencies failed: numpy<2 asks for a version other than the interpreter's "
        "built-in numpy 2.5.2, which cannot be replaced"
    )


async def test_a_pyproject_s_dependencies_are_installed(index: str, tmp_path: Path) -> None:
    pyproject = b'[project]\nname = "app"\nversion = "1"\ndependencies = ["tinydep"]\n'
    code = {"app.py": SHOWS, "pyproject.toml": pyproject, "requirements.txt": b"sdistdep\n"}
    outcome, stdout = await run(node(index, tmp_path), python_job(code, "app.py"))
    assert (outcome.state, outcome.error, stdout) == (JobState.COMPLETED, None, INSTALLED)


@pytest.mark.parametrize(
    ("requirements", "error"),
    [
        ("nativedep==1.0", f"nativedep has no pure-Python wheel on the package index; {NATIVE}"),
        ("sdistdep", f"sdistdep has no pure-Python wheel on the package index; {NATIVE}"),
        (
            "needsnative",
            f"nativedep (needed by needsnative) has no pure-Python wheel on the package "
            f"index; {NATIVE}",
        ),
    ],
)
async def test_a_package_without_a_pure_python_wheel_is_refused_by_name(
    index: str, tmp_path: Path, requirements: str, error: str
) -> None:
    on = node(index, tmp_path)
    code = {"app.py": b"", "requirements.txt": f"tinydep\n{requirements}\n".encode()}
    job = python_job(code, "app.py", outputs=[{"name": "out", "path": "/outputs"}])
    outcome, _ = await run(on, job)
    assert (outcome.state, outcome.error) == (JobState.FAILED, f"dependencies failed: {error}")
    assert kept(tmp_path) == [], "nothing of a failed install is kept"
    assert isinstance(on.sink, MemoryEventSink)
    (result,) = [e for e in on.sink.of(job.id) if e.kind == "result"]
    assert result.outputs is not None
    log = untar(result.outputs["out"])["requirements.log"].decode()
    assert "No matching distribution found for" in log, "pip's output is the job's log"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            "tinydep >> 1",
            "requirements.txt line 2: 'tinydep >> 1' is not a valid requirement (Expected ",
        ),
        (
            "--index-url http://127.0.0.1:9/simple",
            "requirements.txt line 2: --index-url is a pip option; python --runtime=wasm reads "
            "requirements only and installs from the executor's package index",
        ),
        (
            "tinydep @ https://example.org/tinydep-1.0-py3-none-any.whl",
            "requirements.txt line 2: tinydep names a URL or file; python --runtime=wasm "
            "installs from the executor's package index only",
        ),
    ],
)
async def test_a_bad_requirement_line_is_refused_saying_which(
    index: str, tmp_path: Path, line: str, error: str
) -> None:
    on = node(index, tmp_path)
    code = {"app.py": b"", "requirements.txt": f"# deps\n{line}\n".encode()}
    outcome, _ = await run(on, python_job(code, "app.py"))
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith(f"dependencies failed: {error}")
    assert packages(on).installs == 0


def test_requirement_files_are_read_as_pip_reads_them() -> None:
    text = "a==1 # pinned\n\n# note\nb[x] \\\n  >=2 ; python_version >= '3'\nc#not a comment\n"
    assert requirement_lines(text) == [
        (1, "a==1"), (4, "b[x]   >=2 ; python_version >= '3'"), (6, "c#not a comment")
    ]  # fmt: skip


def test_an_unreachable_index_is_not_taken_for_a_missing_wheel() -> None:
    output = (
        "WARNING: Retrying (Retry(total=4)) after connection broken by NewConnectionError\n"
        "ERROR: Could not find a version that satisfies the requirement tinydep (from "
        "versions: none)\nERROR: No matching distribution found for tinydep\n"
    )
    assert pip_failure(output, "http://index") == (
        "the package index http://index could not be read for tinydep"
    )


def test_markers_are_evaluated_for_the_guest() -> None:
    lines = [(1, "a; sys_platform == 'linux'"), (2, "b>=1; python_version >= '3.15'"), (3, "c")]
    kept = parse_requirements("requirements.txt", lines, guest_markers("3.15.0"))
    assert [str(r) for r in kept] == ["b>=1", "c"]


def test_a_docstring_s_pip_line_may_carry_flags_that_change_nothing() -> None:
    app = b'"""Counts.\n\npip install -U --quiet tinydep==1.0\n"""\nimport tinydep\n'
    assert job_requirements({"app.py": app}, ["app.py"]) == (
        "app.py's docstring",
        [(0, "tinydep==1.0")],
    )
    with_index = b'"""pip install -i http://elsewhere tinydep"""\n'
    source, lines = job_requirements({"app.py": with_index}, ["app.py"]) or ("", [])
    with pytest.raises(JobError, match="-i is a pip option"):
        parse_requirements(source, lines, guest_markers("3.15.0"))
