"""``client/``, ``requester/``, ``executor/`` and ``templates/`` are installed as
``shoal.<name>``: ``shoal/<name>`` links each folder, and no code imports them by their
top-level names (which exist only in a checkout, and would load a second copy there)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("client", "requester", "executor", "templates")
CODE = ("shoal", *FOLDERS, "tests", "bench", "scripts", "examples")


@pytest.mark.parametrize("name", FOLDERS)
def test_each_folder_is_linked_under_shoal(name: str) -> None:
    link = ROOT / "shoal" / name
    assert link.is_symlink()
    assert os.readlink(link) == f"../{name}"


def _python_files() -> list[Path]:
    found = []
    for top in CODE:
        for folder, _, names in os.walk(ROOT / top):  # links are not followed
            found += [Path(folder) / name for name in names if name.endswith(".py")]
    return sorted(found)


def test_no_code_imports_the_top_level_names() -> None:
    wrong = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            if any(module.split(".")[0] in FOLDERS for module in modules):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert wrong == []
