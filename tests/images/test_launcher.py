"""Unit tests of the python image's launcher: no Docker, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import pytest

from .support import make_tinydep

# --- helpers ----------------------------------------------------------------------------------


def layout(launcher: ModuleType, root: Path) -> Any:
    """A launcher Layout rooted in a temporary directory."""
    return launcher.Layout(
        code=root / "code",
        work=root / "work",
        outputs=root / "outputs",
        prebuilt=root / "prebuilt",
        job_env=root / "jobenv",
        empty_env=root / "emptyenv",
        tools=Path(sys.executable).parent,
    )


def write(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` under ``root``; return root."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


class FakeRunner:
    """Stands in for pip/poetry: records commands, writes to the log, returns ``code``."""

    def __init__(self, code: int = 0) -> None:
        self.code = code
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: BinaryIO
    ) -> int:
        self.calls.append(list(argv))
        log.write(b"fake tool output\n")
        return self.code


class FakeExec:
    """Stands in for os.execvpe: records the command and environment."""

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.env: dict[str, str] = {}

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        self.argv, self.env = list(argv), dict(env)
        return 0


# --- docstring rule ---------------------------------------------------------------------------

DOC_APP = '''"""Fetch things.

    pip install tinydep 'other>=2,<3'
pipeline install not-a-package
pip freeze
pip install "name with spaces"  # a comment
"""
print("hi")
'''


def test_docstring_pip_lines_only_real_pip_install(launcher: ModuleType) -> None:
    assert launcher.docstring_pip_lines(DOC_APP) == [
        ["pip", "install", "tinydep", "other>=2,<3"],
        ["pip", "install", "name with spaces"],
    ]


@pytest.mark.parametrize(
    "source",
    [
        "print('no docstring')\n",
        "x = 1\n'''pip install late-string'''\n",
        '"""Just prose; pip is mentioned, pip install alone."""\n',
        "def broken(:\n",
        "",
    ],
)
def test_docstring_without_pip_lines(launcher: ModuleType, source: str) -> None:
    assert launcher.docstring_pip_lines(source) == []


def test_docstring_is_parsed_not_executed(launcher: ModuleType, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    source = f'"""pip install x"""\nopen({str(marker)!r}, "w").close()\n'
    assert launcher.docstring_pip_lines(source) == [["pip", "install", "x"]]
    assert not marker.exists()


# --- rule precedence --------------------------------------------------------------------------

PYPROJECT_PEP621 = '[project]\nname = "p"\nversion = "1"\ndependencies = ["tinydep"]\n'
PYPROJECT_POETRY = '[tool.poetry]\nname = "p"\nversion = "1"\n'
PYPROJECT_DYNAMIC = '[project]\nname = "p"\nversion = "1"\ndynamic = ["dependencies"]\n'
PYPROJECT_TOOLS = '[tool.ruff]\nline-length = 99\n\n[tool.ruff.lint]\nselect = ["E"]\n'


@pytest.mark.parametrize(
    ("files", "rule", "installs"),
    [
        (
            {
                "app.py": '"""pip install a b"""\n',
                "requirements.txt": "c\n",
                "pyproject.toml": PYPROJECT_PEP621,
            },
            "docstring",
            (("pip", "install", "a", "b"),),
        ),
        (
            {"app.py": "print(1)\n", "requirements.txt": "c\n"},
            "requirements",
            (("pip", "install", "-r", "requirements.txt"),),
        ),
        (
            {"a.py": '"""pip install a"""\n', "b.py": "", "requirements.txt": "c\n"},
            "requirements",
            (("pip", "install", "-r", "requirements.txt"),),
        ),
        (
            {"pyproject.toml": PYPROJECT_POETRY, "requirements.txt": "c\n"},
            "poetry",
            (("poetry", "install", "--no-root"),),
        ),
        (
            {"pyproject.toml": PYPROJECT_PEP621, "requirements.txt": "c\n", "setup.py": ""},
            "pyproject",
            (("pip", "install", "tinydep"),),
        ),
        (
            {"pyproject.toml": PYPROJECT_DYNAMIC, "requirements.txt": "c\n"},
            "pyproject",
            (("pip", "install", "."),),
        ),
        (
            {"pyproject.toml": PYPROJECT_TOOLS, "requirements.txt": "c\n", "a.py": "", "b.py": ""},
            "requirements",
            (("pip", "install", "-r", "requirements.txt"),),
        ),
        (
            {"pyproject.toml": PYPROJECT_TOOLS, "setup.py": ""},
            "setup.py",
            (("pip", "install", "-e", "."),),
        ),
        (
            {"requirements.txt": "c\n", "setup.py": ""},
            "requirements",
            (("pip", "install", "-r", "requirements.txt"),),
        ),
        ({"setup.py": "", "main.py": ""}, "setup.py", (("pip", "install", "-e", "."),)),
    ],
)
def test_rule_precedence(
    launcher: ModuleType,
    tmp_path: Path,
    files: dict[str, str],
    rule: str,
    installs: tuple[tuple[str, ...], ...],
) -> None:
    plan = launcher.find_plan(write(tmp_path, files))
    assert (plan.rule, plan.installs) == (rule, installs)


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"app.py": "print(1)\n"},
        {"data.csv": "a\n1\n"},
        {"pyproject.toml": PYPROJECT_TOOLS, "app.py": ""},
        {"pyproject.toml": '[project]\nname = "p"\n', "requirements.txt": "c\n"},
    ],
)
def test_no_rule(launcher: ModuleType, tmp_path: Path, files: dict[str, str]) -> None:
    assert launcher.find_plan(write(tmp_path, files)) is None


@pytest.mark.parametrize(
    ("files", "environ", "installs"),
    [
        ({"pyproject.toml": PYPROJECT_POETRY}, {}, (("poetry", "install", "--no-root"),)),
        (
            {"pyproject.toml": PYPROJECT_POETRY},
            {"SHOAL_INSTALL_PROJECT": "1"},
            (("poetry", "install"),),
        ),
        (
            {"pyproject.toml": PYPROJECT_PEP621},
            {"SHOAL_INSTALL_PROJECT": "1"},
            (("pip", "install", "."),),
        ),
        (
            {"pyproject.toml": PYPROJECT_PEP621},
            {"SHOAL_INSTALL_PROJECT": "0"},
            (("pip", "install", "tinydep"),),
        ),
    ],
)
def test_the_project_itself_only_when_the_job_asks(
    launcher: ModuleType,
    tmp_path: Path,
    files: dict[str, str],
    environ: dict[str, str],
    installs: tuple[tuple[str, ...], ...],
) -> None:
    assert launcher.find_plan(write(tmp_path, files), (), environ).installs == installs


def test_invalid_pyproject_is_a_dependency_failure(launcher: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(launcher.LaunchError) as caught:
        launcher.find_plan(write(tmp_path, {"pyproject.toml": "[project\n"}))
    assert caught.value.code == launcher.EXIT_DEPS_FAILED
    assert str(caught.value).startswith("pyproject.toml is not valid TOML")


SEVERAL = {
    "app.py": '"""pip install a"""\n',
    "util.py": '"""pip install u"""\n',
    "pkg/__init__.py": "",
}


@pytest.mark.parametrize(
    ("command", "source"),
    [
        (["python", "app.py"], "app.py"),
        (["python3", "-u", "-X", "dev", "util.py", "x.py"], "util.py"),
        (["python3.11", "/code/app.py"], "app.py"),
        (["python", "./sub/../app.py"], "app.py"),
        (["python", "-m", "app"], "app.py"),
        (["python", "-m", "pkg"], "pkg/__main__.py"),
        (["app.py"], "app.py"),
    ],
)
def test_docstring_of_the_entry_module_among_several(
    launcher: ModuleType, tmp_path: Path, command: list[str], source: str
) -> None:
    files = {**SEVERAL, "pkg/__main__.py": '"""pip install m"""\n'}
    plan = launcher.find_plan(write(tmp_path, files), command)
    assert plan.rule == "docstring"
    assert plan.source == source


@pytest.mark.parametrize(
    "command",
    [
        ["python", "-c", "import app"],
        ["python", "/inputs/app.py"],
        ["python", "missing.py"],
        ["bash", "run.sh"],
        ["python", "../app.py"],
        [],
    ],
)
def test_no_entry_among_several_modules(
    launcher: ModuleType, tmp_path: Path, command: list[str]
) -> None:
    assert launcher.find_plan(write(tmp_path, SEVERAL), command) is None


def test_unused_docstring_requirements_are_said_on_stderr(
    launcher: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    lay = layout(launcher, tmp_path)
    write(lay.code, SEVERAL)
    runner, execute = FakeRunner(), FakeExec()
    launcher.launch(["--", "-c", "import app"], lay, {"PATH": "/usr/bin"}, runner, execute)
    assert runner.calls == []
    err = capsys.readouterr().err
    assert err == (
        "shoal-launch: note: pip install lines in app.py, util.py not used: with several "
        "modules the command must run the one that lists them (python app.py)\n"
    )
    assert not lay.log.exists()


@pytest.mark.parametrize(
    ("text", "poetry"),
    [
        (PYPROJECT_POETRY, True),
        ("[tool.poetry.dependencies]\npython = '^3.11'\n", True),
        ("[ tool.poetry ]\n", True),
        (PYPROJECT_PEP621, False),
        ("[tool.poetryx]\n", False),
        ("# [tool.poetry]\n", False),
        ("[tool.ruff]\nline-length = 99\n", False),
    ],
)
def test_poetry_section(launcher: ModuleType, text: str, poetry: bool) -> None:
    assert launcher.has_poetry_section(text) is poetry


@pytest.mark.parametrize(
    ("files", "cacheable"),
    [
        ({"requirements.txt": "tinydep==1.0\nrequests>=2\n"}, True),
        ({"requirements.txt": "-e .\n"}, False),
        ({"requirements.txt": "./vendor/pkg\n"}, False),
        ({"requirements.txt": "-r more.txt\n"}, False),
        ({"app.py": '"""pip install tinydep"""\n'}, True),
        ({"app.py": '"""pip install -e ."""\n'}, False),
        ({"setup.py": ""}, False),
        ({"pyproject.toml": PYPROJECT_PEP621}, False),
    ],
)
def test_only_third_party_requirements_are_cacheable(
    launcher: ModuleType, tmp_path: Path, files: dict[str, str], cacheable: bool
) -> None:
    assert launcher.find_plan(write(tmp_path, files)).cacheable is cacheable


# --- staging ----------------------------------------------------------------------------------


def test_stage_code_leaves_out_caches_and_git(launcher: ModuleType, tmp_path: Path) -> None:
    code = write(
        tmp_path / "code",
        {
            "app.py": "x",
            "pkg/mod.py": "y",
            "pkg/__pycache__/mod.cpython-311.pyc": "z",
            "old.pyc": "z",
            ".git/HEAD": "ref",
            "data/.gitkeep": "",
        },
    )
    launcher.stage_code(code, tmp_path / "work")
    staged = sorted(
        p.relative_to(tmp_path / "work").as_posix()
        for p in (tmp_path / "work").rglob("*")
        if p.is_file()
    )
    assert staged == ["app.py", "data/.gitkeep", "pkg/mod.py"]


def test_stage_single_file_and_absent_code(launcher: ModuleType, tmp_path: Path) -> None:
    single = write(tmp_path, {"one.py": "print(1)"}) / "one.py"
    launcher.stage_code(single, tmp_path / "w1")
    assert [p.name for p in (tmp_path / "w1").iterdir()] == ["one.py"]
    launcher.stage_code(tmp_path / "missing", tmp_path / "w2")
    assert list((tmp_path / "w2").iterdir()) == []


# --- argv -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["--", "python", "app.py"], ["python", "app.py"]),
        (["--", "-c", "import this"], ["python", "-c", "import this"]),
        (["--", "app.py", "a b", "'q'"], ["python", "app.py", "a b", "'q'"]),
        (["--", "poetry", "run", "python", "x.py"], ["poetry", "run", "python", "x.py"]),
        (["echo", "--", "x"], ["echo", "--", "x"]),
        (["--", "--", "x"], ["python", "--", "x"]),
    ],
)
def test_user_command(launcher: ModuleType, argv: list[str], command: list[str]) -> None:
    assert launcher.user_command(argv) == command


@pytest.mark.parametrize("argv", [[], ["--"]])
def test_empty_command_is_usage_error(launcher: ModuleType, argv: list[str]) -> None:
    with pytest.raises(launcher.LaunchError) as caught:
        launcher.user_command(argv)
    assert caught.value.code == launcher.EXIT_USAGE == 2


def test_main_prints_one_line_and_exits_2(
    launcher: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launcher.main(["--"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shoal-launch: no command given")
    assert err.count("\n") == 1


def test_shebang_fallback(launcher: ModuleType, tmp_path: Path) -> None:
    script = write(tmp_path, {"tool": "#!/usr/bin/env python3 -u\nprint(1)\n"}) / "tool"
    assert launcher.find_on_path("tool", f"/nonexistent:{tmp_path}") == str(script)
    assert launcher.shebang_argv(["tool", "a b"], str(script)) == [
        "/usr/bin/env",
        "python3 -u",
        str(script),
        "a b",
    ]
    plain = write(tmp_path, {"data": "no shebang"}) / "data"
    assert launcher.shebang_argv(["data"], str(plain)) is None
    assert launcher.shebang_argv(["tool"], None) is None


# --- launch: logging, failures, prebuilt environments ----------------------------------------


def test_launch_logs_steps_and_execs_in_job_env(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lay = layout(launcher, tmp_path)
    write(lay.code, {"requirements.txt": "tinydep\n", "main.py": ""})
    runner, execute = FakeRunner(), FakeExec()
    launcher.launch(
        ["--", "main.py", "x y"], lay, {"PATH": "/usr/bin", "HOME": "/nonexistent"}, runner, execute
    )
    assert execute.argv == ["python", "main.py", "x y"]
    assert execute.env["PATH"].split(os.pathsep)[0] == str(lay.job_env / "bin")
    assert execute.env["VIRTUAL_ENV"] == str(lay.job_env)
    assert execute.env["HOME"] == "/tmp"
    assert runner.calls == [
        [
            str(lay.tools / "python"),
            "-m",
            "pip",
            "--python",
            str(lay.job_env / "bin" / "python"),
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            "requirements.txt",
        ]
    ]
    log = lay.log.read_text()
    assert "rule: requirements (requirements.txt)" in log
    assert "$ pip install -r requirements.txt\nfake tool output\n[exit 0]\n" in log
    assert "installing for this job only (no prebuilt environment)" in log
    assert "PIP_CACHE_DIR" not in execute.env, "pip's cache stays in the job's own /tmp"
    assert Path.cwd() == lay.work


def test_launch_without_code_installs_nothing(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lay = layout(launcher, tmp_path)
    runner, execute = FakeRunner(), FakeExec()
    launcher.launch(["--", "-c", "pass"], lay, {"PATH": "/usr/bin"}, runner, execute)
    assert runner.calls == []
    assert execute.env["VIRTUAL_ENV"] == str(lay.empty_env)
    assert list(lay.work.iterdir()) == []
    assert not lay.log.exists(), "no requirements.log without dependencies"


def test_failed_install_exits_3_with_one_line(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lay = layout(launcher, tmp_path)
    write(lay.code, {"requirements.txt": "nope\n"})
    execute = FakeExec()
    with pytest.raises(launcher.LaunchError) as caught:
        launcher.launch(["--", "python", "x"], lay, {}, FakeRunner(code=1), execute)
    assert caught.value.code == launcher.EXIT_DEPS_FAILED == 3
    assert str(caught.value) == (
        f"dependency install failed (pip install -r requirements.txt exited 1); see {lay.log}"
    )
    assert execute.argv == []
    assert "[exit 1]" in lay.log.read_text()


def install_step(launcher: ModuleType, root: Path, plan: dict[str, Any], runner: Any) -> Any:
    """Run the install step on ``plan`` (as the executor's install container does)."""
    lay = layout(launcher, root)
    write(lay.code, {launcher.PLAN_FILE: json.dumps(plan)})
    assert launcher.install_prebuilt(lay, {"PATH": os.environ["PATH"]}, runner) == 0
    return lay


def test_install_step_builds_and_records_the_plan_not_the_marker(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    plan = {"rule": "docstring", "installs": [["pip", "install", "tinydep"]], "files": {}}
    runner = FakeRunner()
    lay = install_step(launcher, tmp_path, plan, runner)
    assert runner.calls[0][3:5] == ["--python", str(lay.prebuilt / "bin" / "python")]
    assert runner.calls[0][-1] == "tinydep"
    assert json.loads((lay.prebuilt / launcher.PLAN_RECORD).read_text()) == plan
    assert not (lay.prebuilt / launcher.COMPLETE_MARKER).exists(), "only the executor marks it"
    assert "installing the shared environment" in lay.log.read_text()


@pytest.mark.parametrize(
    "plan",
    [
        {"rule": "docstring", "installs": [["sh", "-c", "x"]], "files": {}},
        {"rule": "poetry", "installs": [["pip", "install", "x"]], "files": {}},
        {"rule": "requirements", "installs": [], "files": {}},
        {"rule": "requirements", "installs": [["pip", "install", "x"]], "files": {"../x": ""}},
        {"installs": []},
    ],
)
def test_install_step_refuses_what_is_not_a_pip_plan(
    launcher: ModuleType, tmp_path: Path, plan: dict[str, Any]
) -> None:
    lay = layout(launcher, tmp_path)
    write(lay.code, {launcher.PLAN_FILE: json.dumps(plan)})
    with pytest.raises(launcher.LaunchError) as caught:
        launcher.install_prebuilt(lay, {}, FakeRunner())
    assert caught.value.code == launcher.EXIT_USAGE


def test_prebuilt_env_used_only_when_marked_and_its_plan_is_the_jobs(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    plan = {
        "rule": "requirements",
        "installs": [["pip", "install", "-r", "requirements.txt"]],
        "files": {"requirements.txt": "tinydep\n"},
    }
    lay = install_step(launcher, tmp_path, plan, FakeRunner())
    write(lay.code, {"requirements.txt": "tinydep\r\n", "main.py": ""})
    runner, execute = FakeRunner(), FakeExec()
    launcher.launch(["--", "main.py"], lay, {"PATH": "/usr/bin"}, runner, execute)
    assert execute.env["VIRTUAL_ENV"] == str(lay.job_env), "not marked complete: not used"
    (lay.prebuilt / launcher.COMPLETE_MARKER).write_text("key\n")
    runner = FakeRunner()
    launcher.launch(["--", "main.py"], lay, {"PATH": "/usr/bin"}, runner, execute)
    assert runner.calls == []
    assert execute.env["VIRTUAL_ENV"] == str(lay.prebuilt)
    assert "using the environment prebuilt by the executor" in lay.log.read_text()
    write(lay.code, {"requirements.txt": "tinydep\nother\n"})
    launcher.launch(["--", "main.py"], lay, {"PATH": "/usr/bin"}, runner, execute)
    assert execute.env["VIRTUAL_ENV"] == str(lay.job_env), "another plan: installed per job"
    assert runner.calls


def test_real_pip_install_step_then_job(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip for real, offline (--no-index, a hand-made wheel): the prebuilt console script runs."""
    monkeypatch.chdir(tmp_path)
    wheels = tmp_path / "wheels"
    make_tinydep(wheels)
    environ = {
        "PATH": os.environ["PATH"],
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_CONFIG_FILE": os.devnull,
    }
    lay = layout(launcher, tmp_path)
    plan = {
        "rule": "requirements",
        "installs": [["pip", "install", "-r", "requirements.txt"]],
        "files": {"requirements.txt": "tinydep==1.0\n"},
    }
    write(lay.code, {launcher.PLAN_FILE: json.dumps(plan)})
    launcher.install_prebuilt(lay, environ, launcher.run_logged)
    (lay.prebuilt / launcher.COMPLETE_MARKER).write_text("key\n")
    (lay.code / launcher.PLAN_FILE).unlink()
    write(lay.code, {"requirements.txt": "tinydep==1.0\n"})
    execute = FakeExec()
    launcher.launch(["--", "tinydep-hello", "a b"], lay, environ, launcher.run_logged, execute)
    assert execute.env["VIRTUAL_ENV"] == str(lay.prebuilt)
    result = subprocess.run(
        execute.argv, env=execute.env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "hello from tinydep a b\n"


def test_run_logged_appends_output(launcher: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "log").write_text("before\n")
    with (tmp_path / "log").open("ab") as log:
        code = launcher.run_logged(
            [sys.executable, "-c", "import sys; print('out'); sys.exit('err')"],
            tmp_path,
            dict(os.environ),
            log,
        )
    assert code == 1
    assert (tmp_path / "log").read_text() == "before\nout\nerr\n"
