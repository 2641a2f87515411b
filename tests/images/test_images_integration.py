"""The real runtime images, run with the executor's container settings (see support.run_job).

Needs a Docker engine (scripts/ensure-docker.sh) and builds the images with
runtime-images/build.sh (a no-op when they are up to date). Packages come from a local index
served by this test on the docker bridge: no test depends on the public internet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from shoal.images import DEFAULT_PYTHON_VERSION, ENV_MOUNT, duckdb_image, python_image

from .support import BUILD_SCRIPT, JobResult, bridge_gateway, docker, make_tinydep, run_job
from .support import serve_directory as serve

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("images")]

PYTHON = python_image(DEFAULT_PYTHON_VERSION)
DUCKDB = duckdb_image()
SHOW_TINYDEP = "import tinydep, sys; print(tinydep.VALUE, sys.prefix)"


@dataclass(frozen=True)
class Index:
    """A local package index reachable from containers on the default bridge."""

    url: str
    host: str

    @property
    def env(self) -> dict[str, str]:
        """Environment pointing pip at this index only."""
        return {"PIP_INDEX_URL": self.url, "PIP_TRUSTED_HOST": self.host}


@pytest.fixture(scope="session")
def images() -> None:
    """Build (or confirm) the runtime images; fails when Docker is not available."""
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    assert info.returncode == 0, "docker is not running: run scripts/ensure-docker.sh"
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, timeout=900)


@pytest.fixture(scope="session")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """tinydep (built here), the build backends pip/poetry need and colorama (Bacalhau's
    poetry fixture), served over HTTP."""
    root = tmp_path_factory.mktemp("index")
    simple = root / "simple"
    make_tinydep(simple / "tinydep")
    backends = tmp_path_factory.mktemp("backends")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--no-deps",
            "--dest",
            str(backends),
            "poetry-core>=2,<3",
            "setuptools>=70",
            "colorama==0.4.6",
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    for wheel in backends.glob("*.whl"):
        project = wheel.name.split("-")[0].lower().replace("_", "-")
        (simple / project).mkdir(parents=True, exist_ok=True)
        wheel.rename(simple / project / wheel.name)
    host = bridge_gateway()
    with serve(root, host) as base:
        yield Index(f"{base}/simple/", host)


@pytest.fixture
def env_volume() -> Iterator[str]:
    """A fresh named volume for /shoal-env."""
    name = f"shoal-test-env-{uuid.uuid4().hex[:12]}"
    docker("volume", "create", name)
    yield name
    docker("volume", "rm", "-f", name, check=False)


def run_python(
    argv: list[str],
    *,
    code: Mapping[str, str | bytes] | None = None,
    env: Mapping[str, str] | None = None,
    env_volume: str | None = None,
) -> JobResult:
    """Run a job in the python image through its launcher (``env_volume`` read-only)."""
    volumes = {env_volume: ENV_MOUNT + ":ro"} if env_volume else None
    return run_job(PYTHON, ["--", *argv], code=code, env=env, volumes=volumes)


def assert_ok(result: JobResult) -> None:
    """The job succeeded; show its streams and log when not."""
    assert result.code == 0, (result.stdout, result.stderr, result.log())


# --- python: dependency rules -----------------------------------------------------------------


def test_docstring_pip(index: Index) -> None:
    app = f'"""Uses tinydep.\n\n    pip install tinydep==1.0\n"""\n{SHOW_TINYDEP}\n'
    result = run_python(["python", "app.py"], code={"app.py": app}, env=index.env)
    assert_ok(result)
    assert result.stdout.startswith("tinydep-1.0 /tmp/shoal-env")
    assert "rule: docstring (app.py)" in result.log()
    assert "$ pip install tinydep==1.0\n" in result.log()
    assert "Successfully installed tinydep-1.0" in result.log()


def test_requirements_console_script_in_noexec_tmp(index: Index) -> None:
    """A per-job env lives on the noexec /tmp: its scripts still run (via their #!)."""
    result = run_python(
        ["tinydep-hello", "a b", "c"], code={"requirements.txt": "tinydep\n"}, env=index.env
    )
    assert_ok(result)
    assert result.stdout == "hello from tinydep a b c\n"
    assert "$ pip install -r requirements.txt\n" in result.log()


def test_pyproject_pep621(index: Index) -> None:
    pyproject = (
        '[project]\nname = "pepjob"\nversion = "0.1"\ndependencies = ["tinydep"]\n'
        '[build-system]\nrequires = ["setuptools>=70"]\n'
        'build-backend = "setuptools.build_meta"\n'
        '[tool.setuptools]\npy-modules = ["pepjob"]\n'
    )
    code = {"pyproject.toml": pyproject, "pepjob.py": "import tinydep\nNAME = 'pepjob'\n"}
    result = run_python(
        ["-c", "import pepjob, tinydep; print(pepjob.NAME, tinydep.VALUE)"],
        code=code,
        env=index.env,
    )
    assert_ok(result)
    assert result.stdout == "pepjob tinydep-1.0\n"
    assert "rule: pyproject (pyproject.toml)" in result.log()
    assert "$ pip install tinydep\n" in result.log(), "the dependencies, not the project"
    project = run_python(
        ["-c", "import importlib.metadata as m; print(m.version('pepjob'))"],
        code=code,
        env={**index.env, "SHOAL_INSTALL_PROJECT": "1"},
    )
    assert_ok(project)
    assert project.stdout == "0.1\n"
    assert "$ pip install .\n" in project.log()


def test_pyproject_of_tool_settings_leaves_requirements_txt(index: Index) -> None:
    """A flat layout of two modules: ``pip install .`` would fail there."""
    code = {
        "pyproject.toml": "[tool.ruff]\nline-length = 99\n",
        "requirements.txt": "tinydep\n",
        "app.py": "import tinydep, util\nprint(util.NAME, tinydep.VALUE)\n",
        "util.py": "NAME = 'util'\n",
    }
    result = run_python(["python", "app.py"], code=code, env=index.env)
    assert_ok(result)
    assert result.stdout == "util tinydep-1.0\n"
    assert "$ pip install -r requirements.txt\n" in result.log()


def test_docstring_of_the_entry_module_among_several(index: Index) -> None:
    app = f'"""Uses tinydep.\n\n    pip install tinydep==1.0\n"""\nimport util\n{SHOW_TINYDEP}\n'
    code = {"app.py": app, "util.py": '"""Helpers."""\n'}
    result = run_python(["python", "/code/app.py"], code=code, env=index.env)
    assert_ok(result)
    assert result.stdout.startswith("tinydep-1.0 ")
    assert "rule: docstring (app.py)" in result.log()
    unused = run_python(["python", "-c", "import app"], code=code, env=index.env)
    assert unused.code == 1
    assert unused.stderr.startswith(
        "shoal-launch: note: pip install lines in app.py not used: with several modules"
    )
    assert "No module named 'tinydep'" in unused.stderr
    assert "requirements.log" not in unused.outputs


def test_poetry_project_with_poetry_run(index: Index) -> None:
    pyproject = (
        '[project]\nname = "pjob"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["tinydep (>=1.0)"]\n'
        '[tool.poetry]\npackages = [{ include = "pjob" }]\n'
        f'[[tool.poetry.source]]\nname = "local"\nurl = "{index.url}"\npriority = "primary"\n'
        '[build-system]\nrequires = ["poetry-core>=2.0"]\n'
        'build-backend = "poetry.core.masonry.api"\n'
    )
    code = {
        "pyproject.toml": pyproject,
        "pjob/__init__.py": "import tinydep\nGREETING = 'poetry ' + tinydep.VALUE\n",
        "main.py": "import pjob\nprint(pjob.GREETING)\n",
    }
    result = run_python(["poetry", "run", "python", "main.py"], code=code, env=index.env)
    assert_ok(result)
    assert result.stdout == "poetry tinydep-1.0\n"
    assert "rule: poetry (pyproject.toml)" in result.log()
    assert "$ poetry install --no-root\n" in result.log()


def test_bacalhau_multi_file_poetry_fixture(index: Index) -> None:
    """Bacalhau's ``multi-file-poetry`` test project (no README.md, which ``poetry install``
    of the project itself refuses), pointed at the local index: its lock file names PyPI, so
    it is left out and poetry resolves anew."""
    pyproject = (
        '[tool.poetry]\nname = "multi-file-poetry"\nversion = "0.1.0"\ndescription = ""\n'
        'authors = ["Bacalhau Team"]\nreadme = "README.md"\n'
        'packages = [{ include = "multi_file_poetry" }]\n\n'
        '[tool.poetry.dependencies]\npython = "^3.10"\ncolorama = "^0.4.6"\n\n'
        '[build-system]\nrequires = ["poetry-core"]\nbuild-backend = "poetry.core.masonry.api"\n\n'
        '[tool.poetry.scripts]\nmfp = "multi_file_poetry:main"\n'
        f'\n[[tool.poetry.source]]\nname = "local"\nurl = "{index.url}"\npriority = "primary"\n'
    )
    main = 'def main():\n    from colorama import Fore\n\n    print(Fore.BLUE + "Hello World")\n'
    code = {"pyproject.toml": pyproject, "multi_file_poetry/__init__.py": main}
    argv = ["python", "-c", "import multi_file_poetry; multi_file_poetry.main()"]
    result = run_python(argv, code=code, env=index.env)
    assert_ok(result)
    assert result.stdout == "\x1b[34mHello World\n"
    assert "$ poetry install --no-root\n" in result.log()
    assert "colorama" in result.log()


def test_setup_py_editable(index: Index, launcher: ModuleType) -> None:
    setup = (
        "from setuptools import setup\n"
        "setup(name='sjob', version='0.1', py_modules=['sjob'], install_requires=['tinydep'])\n"
    )
    code = {"setup.py": setup, "sjob.py": "import tinydep\nVALUE = tinydep.VALUE\n"}
    result = run_python(
        ["python", "-c", "import sjob; print(sjob.VALUE, sjob.__file__)"],
        code=code,
        env=index.env,
    )
    assert_ok(result)
    work = launcher.Layout().work  # the image's work folder, where /code is staged
    assert result.stdout == f"tinydep-1.0 {work / 'sjob.py'}\n"
    assert "$ pip install -e .\n" in result.log()


def test_failed_install_stops_the_job(index: Index) -> None:
    result = run_python(
        ["python", "-c", "print('must not run')"],
        code={"requirements.txt": "does-not-exist==9.9\n"},
        env=index.env,
    )
    assert result.code == 3
    assert result.stdout == ""
    assert result.stderr == (
        "shoal-launch: dependency install failed (pip install -r requirements.txt exited 1); "
        "see /outputs/requirements.log\n"
    )
    assert "does-not-exist" in result.log()
    assert "[exit 1]" in result.log()


def install_step(plan: dict[str, Any], index: Index, volume: str) -> JobResult:
    """Run the image's install step (``shoal-launch --install``) into ``volume``."""
    code = {"plan.json": json.dumps(plan)}
    return run_job(PYTHON, ["--install"], code=code, env=index.env, volumes={volume: ENV_MOUNT})


def test_install_step_then_jobs_on_the_read_only_env(index: Index, env_volume: str) -> None:
    plan = {
        "rule": "requirements",
        "installs": [["pip", "install", "-r", "requirements.txt"]],
        "files": {"requirements.txt": "tinydep==1.0\n"},
    }
    built = install_step(plan, index, env_volume)
    assert_ok(built)
    assert "$ pip install -r requirements.txt" in built.log()
    code = {"requirements.txt": "tinydep==1.0\n"}
    unmarked = run_python(["tinydep-hello", "x"], code=code, env=index.env, env_volume=env_volume)
    assert_ok(unmarked)
    assert "installing for this job only (no prebuilt environment)" in unmarked.log()
    marker = "from pathlib import Path; Path('/shoal-env/.shoal-complete').write_text('k')"
    docker("run", "--rm", "-v", f"{env_volume}:{ENV_MOUNT}", "--entrypoint", "python", PYTHON,
           "-c", marker)  # fmt: skip
    hostile = "open('/shoal-env/planted', 'w')"
    refused = run_python(["python", "-c", hostile], env_volume=env_volume)
    assert refused.code == 1
    assert "Read-only file system" in refused.stderr
    result = run_python(["tinydep-hello", "y"], code=code, env=index.env, env_volume=env_volume)
    assert_ok(result)
    assert result.stdout == "hello from tinydep y\n"
    assert "using the environment prebuilt by the executor" in result.log()
    assert "$ pip" not in result.log()


# --- python: argv and exit codes --------------------------------------------------------------


def test_exit_code_passes_through() -> None:
    result = run_python(
        ["app.py", "7"], code={"app.py": "import sys\nsys.exit(int(sys.argv[1]))\n"}
    )
    assert result.code == 7
    assert "requirements.log" not in result.outputs, "no log without dependencies"


def test_argv_is_kept_exactly() -> None:
    args = ["a b", "it's", '"quoted"', "", "$HOME", "*", "--flag=x y", "\\n"]
    result = run_python(["-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *args])
    assert_ok(result)
    assert json.loads(result.stdout) == args


def test_no_code_and_no_command() -> None:
    result = run_python([])
    assert result.code == 2
    assert result.stderr.startswith("shoal-launch: no command given")


# --- duckdb -----------------------------------------------------------------------------------


def test_duckdb_query_over_csv_input() -> None:
    data = "city,people\nOslo,700000\nBergen,290000\nTromsø,77000\n"
    result = run_job(
        DUCKDB,
        ["-csv", "-c", "select count(*) as n, sum(people) as total from '/inputs/data.csv'"],
        inputs={"data.csv": data},
    )
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == ["n,total", "3,1067000"]


def test_duckdb_code_file_writes_outputs() -> None:
    sql = (
        "create table t as select * from range(5) r(i);\n"
        "copy (select sum(i) as s from t) to '/outputs/sum.csv' (header);\n"
    )
    result = run_job(
        DUCKDB, ["-init", "/code/q.sql", "-c", "select 'done with init'"], code={"q.sql": sql}
    )
    assert result.code == 0, result.stderr
    assert "done with init" in result.stdout
    assert result.outputs["sum.csv"].decode().splitlines() == ["s", "10"]


def test_duckdb_bad_query_fails() -> None:
    result = run_job(DUCKDB, ["-c", "select * from missing_table"])
    assert result.code != 0
    assert "missing_table" in result.stderr
