"""The executor's reading of a job's shareable requirements: the launcher's, keyed by the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.executor.engines.docker.depplan import code_files, env_key, env_plan, pip_env
from tests.images.support import load_launcher

from .support import tar_of

DOC = '"""Tool.\n\n    pip install tinydep \'other>=2\'\npip install --pre x  # c\n"""\n'
TREES: list[dict[str, str]] = [
    {"app.py": DOC},
    {"app.py": DOC, "requirements.txt": "ignored\n"},
    {"app.py": DOC, "lib.py": "", "requirements.txt": "six\r\nx==1\n"},
    {"app.py": '"""pip install ./local"""\n'},
    {"app.py": '"""pip install -e ."""\n', "requirements.txt": "six\n"},
    {"requirements.txt": "six\n", "pyproject.toml": "[project]\nname='x'\n"},
    {"requirements.txt": "-r other.txt\n"},
    {"requirements.txt": "pkg @ file:///x\n"},
    {"requirements.txt": "--index-url http://i/simple\nsix\n"},
    {"setup.py": "", "a.py": ""},
    {"pkg/mod.py": '"""pip install six"""\n', "pkg/__pycache__/mod.py": ""},
    {"app.py": "this is not python '''"},
    {},
    {"requirements.txt": "six\n", "pyproject.toml": "[tool.ruff]\nline-length = 99\n"},
    {"requirements.txt": "six\n", "pyproject.toml": "[tool.poetry]\nname = 'x'\n"},
    {"app.py": DOC, "util.py": '"""pip install u"""\n', "pkg/__main__.py": DOC},
    {"app.py": '"""pip install -e ."""\n', "util.py": DOC, "requirements.txt": "six\n"},
]
COMMANDS: list[list[str]] = [
    ["--", "python", "app.py"],
    ["--", "util.py", "x"],
    ["--", "python3", "-u", "/code/util.py"],
    ["--", "python", "-m", "pkg"],
    ["--", "-c", "import app"],
    ["--", "bash", "run.sh"],
    [],
]


@pytest.mark.parametrize("argv", COMMANDS)
@pytest.mark.parametrize("files", TREES)
def test_same_plan_as_the_launcher(files: dict[str, str], argv: list[str], tmp_path: Path) -> None:
    launcher = load_launcher()
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(text.encode())
    work = tmp_path / "work"
    launcher.stage_code(tmp_path, work)
    command = launcher.user_command(argv) if argv else []
    plan = launcher.find_plan(work, command)
    expected = launcher.env_plan(plan) if plan is not None and plan.cacheable else None
    found = code_files([tar_of({k: v.encode() for k, v in files.items()})])
    assert env_plan(found, argv) == expected


def test_key_depends_on_plan_image_and_every_pip_variable() -> None:
    plan = env_plan(code_files([tar_of({"requirements.txt": b"six\n"})]))
    assert plan is not None
    pip = pip_env({"PIP_INDEX_URL": "http://i/simple", "PYTHONPATH": "/code", "HOME": "/x"})
    assert pip == {"PIP_INDEX_URL": "http://i/simple"}, "nothing else of the job's env"
    key = env_key(plan, "sha256:a", pip)
    assert len(key) == 64
    assert key == env_key(dict(reversed(plan.items())), "sha256:a", dict(pip))
    assert key != env_key(plan, "sha256:b", pip)
    assert key != env_key(plan, "sha256:a", {**pip, "PIP_CONSTRAINT": "/x"})
    other = env_plan(code_files([tar_of({"requirements.txt": b"six==1\n"})]))
    assert other is not None
    assert key != env_key(other, "sha256:a", pip)
