"""Packing ``--code``: exclusions, links, sizes, unreadable files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shoal.client.archive import pack
from shoal.errors import CodeArchiveError
from shoal.inline import open_inline


def names(data: str) -> list[str]:
    with open_inline(data) as tar:
        return tar.getnames()


def test_exclusions(tmp_path: Path) -> None:
    for rel in [
        "main.py",
        "__pycache__/main.cpython-311.pyc",
        "old.pyc",
        ".git/HEAD",
        "pkg/mod.py",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert sorted(names(pack(tmp_path).data)) == ["main.py", "pkg", "pkg/mod.py"]


def test_link_inside_is_kept_and_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "real.py").write_text("x")
    os.symlink("real.py", root / "alias.py")
    assert "alias.py" in names(pack(root).data)
    os.symlink("/etc/passwd", root / "leak")
    with pytest.raises(CodeArchiveError, match="outside"):
        pack(root)


def test_missing_path() -> None:
    with pytest.raises(CodeArchiveError, match="no such file or directory"):
        pack("/nonexistent/app.py")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text("x")
    real_open = Path.open

    def guarded(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == secret:  # chmod 0 does not stop root, so refuse the read here
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded)
    with pytest.raises(CodeArchiveError, match="cannot read .*secret.py: permission denied"):
        pack(tmp_path)


def test_archive_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x")
    assert pack(tmp_path).data == pack(tmp_path).data


def test_an_unchanged_folder_is_packed_once(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    first = pack(tmp_path)
    assert pack(tmp_path) is first  # read and compressed once
    (tmp_path / "app.py").write_text("print(2)\n")
    os.utime(tmp_path / "app.py", ns=(1, 1))  # a change within the same clock tick shows too
    changed = pack(tmp_path)
    assert changed is not first
    with open_inline(changed.data) as tar:
        member = tar.extractfile("app.py")
        assert member is not None
        assert member.read() == b"print(2)\n"
