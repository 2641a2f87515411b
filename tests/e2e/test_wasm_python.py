"""``shoal exec python --runtime=wasm``: a python job through the whole system on the wasm
engine's python runtime (its interpreter is compiled on the node's first run: minutes)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.executor.engines.wasm.modules import COMPILED_DIR
from shoal.executor.engines.wasm.packages import PREFIX
from tests.client.conftest import Done
from tests.images.support import make_tinydep, serve_directory

from .conftest import System

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A package index on 127.0.0.1 holding tinydep; the package sets installed from it (its
    port is part of their key, so no later run meets them) are removed after the tests."""
    simple = tmp_path_factory.mktemp("index") / "simple"
    make_tinydep(simple / "tinydep")
    before = set(COMPILED_DIR.glob(f"{PREFIX}*"))
    with serve_directory(simple.parent, "127.0.0.1") as url:
        yield f"{url}/simple"
    for made in set(COMPILED_DIR.glob(f"{PREFIX}*")) - before:
        if made.is_dir():
            shutil.rmtree(made, ignore_errors=True)
        else:
            made.unlink(missing_ok=True)


@pytest.fixture
def system_env(index: str) -> dict[str, str]:
    """The executor's pip finds python --runtime=wasm jobs' requirements on ``index``."""
    return {"SHOAL_WASM_PACKAGE_INDEX": index}


async def run_app(system: System, code: Path, *options: str) -> Done:
    """``shoal exec python --runtime=wasm --code CODE OPTIONS --id-only --wait -- python
    app.py``."""
    return await system.shoal(
        "exec", "python", "--runtime=wasm", "--code", str(code), *options, "--id-only",
        "--wait", "--", "python", "app.py",
    )  # fmt: skip


async def described(system: System, done: Done) -> dict[str, Any]:
    """``shoal job describe`` of the job ``done`` printed, as JSON."""
    found = await system.shoal("job", "describe", done.out.strip(), "--output-format", "json")
    assert found.code == 0, found.err
    record: dict[str, Any] = json.loads(found.out)
    return record


SUMMARISES = """\
import json
import pandas as pd

frame = pd.read_csv("/inputs/prices.csv")
summary = {"rows": len(frame), "total": float(frame["price"].sum())}
with open("/outputs/summary.json", "w") as out:
    json.dump(summary, out)
print(1)
"""


async def test_a_pandas_job_reads_its_csv_and_its_summary_is_collected(
    system: System, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(SUMMARISES)
    prices = tmp_path / "prices.csv"
    prices.write_text("item,price\napple,1.5\npear,2.25\n")
    done = await run_app(system, app, "-i", f"src={prices}")
    assert done.code == 0, done.err
    job_id = done.out.strip()
    logs = await system.shoal("job", "logs", job_id)
    assert logs.out == "1\n"
    got = await system.shoal("job", "get", job_id, "--output-dir", str(tmp_path / "o"))
    assert got.code == 0, got.err
    summary = json.loads((tmp_path / "o" / "outputs" / "summary.json").read_text())
    assert summary == {"rows": 2, "total": 3.75}


async def test_the_exit_code_is_passed_through(system: System, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("raise SystemExit(5)\n")
    done = await run_app(system, app)
    assert done.code != 0
    record = await described(system, done)
    assert (record["state"], record["exit_code"]) == ("failed", 5)


async def test_a_command_other_than_python_is_refused_at_submission(
    system: System, tmp_path: Path
) -> None:
    app = tmp_path / "run.sh"
    app.write_text("echo hi\n")
    done = await system.shoal(
        "exec", "python", "--runtime=wasm", "--code", str(app), "--", "bash", "run.sh"
    )  # fmt: skip
    assert done.code == 2
    assert done.err.startswith(
        "TranslationError: python --runtime=wasm runs python only: the command after -- "
        "must start with python, not 'bash'"
    )


async def test_a_pure_python_requirement_is_installed_and_a_native_one_refused(
    system: System, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("import tinydep\nprint(tinydep.VALUE)\n")
    (code / "requirements.txt").write_text("tinydep==1.0\n")
    done = await run_app(system, code)
    assert done.code == 0, done.err
    logs = await system.shoal("job", "logs", done.out.strip())
    assert logs.out == "tinydep-1.0\n"
    (code / "requirements.txt").write_text("tinydep==1.0\nlightgbm\n")
    done = await run_app(system, code)
    assert done.code != 0
    assert (await described(system, done))["error"] == (
        "dependencies failed: lightgbm has no pure-Python wheel on the package index; a WASI "
        "interpreter cannot load native code: run it with --runtime=docker"
    )
