"""The archives ``shoal job get`` unpacks (``shoal.client.extract``): whatever a result archive
holds, nothing is written outside ``--output-dir``, no link left in it leads out, and a
refusal is a one-line ``UsageError``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.client.extract import extract
from shoal.errors import UsageError
from tests.fuzz.profiles import fuzz
from tests.fuzz.tarballs import Member, archives, build, gzip_bomb, links_leaving, snapshot

SECRET = b"the sentinel outside the output folder"


@pytest.fixture
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ``base/`` per test: ``outside/sentinel`` beside the output folder."""
    root = tmp_path_factory.mktemp("get")
    (root / "outside").mkdir()
    (root / "outside" / "sentinel").write_bytes(SECRET)
    return root


def _unpack(base: Path, data: bytes, run: int) -> None:
    output_dir = base / f"out{run}"  # shoal job get --output-dir
    before = snapshot(base, skip=output_dir)
    refusal = ""
    try:
        extract(data, output_dir / "outputs", "output outputs")
    except UsageError as error:
        refusal = str(error)
    assert "\n" not in refusal
    assert snapshot(base, skip=output_dir) == before
    if output_dir.exists():
        assert links_leaving(output_dir) == []


@fuzz(weight=3)
@given(data=archives)
@example(data=build([Member(".", "file")]))  # was IsADirectoryError
@example(data=build([Member("a", "file"), Member("a/b", "file")]))  # was NotADirectoryError
@example(data=build([Member("a", "hardlink", "a")]))  # was KeyError
@example(data=build([Member("", "symlink", ".")]))  # was RecursionError
def test_nothing_is_written_outside_the_output_folder(base: Path, data: bytes) -> None:
    _unpack(base, data, len(list(base.iterdir())))


@fuzz()
@given(data=st.one_of(st.binary(max_size=256), archives.map(lambda a: a[: len(a) // 2])))
def test_garbage_and_truncated_archives_are_refused(base: Path, data: bytes) -> None:
    _unpack(base, data, len(list(base.iterdir())))


@pytest.mark.timeout(60)
def test_a_gzip_bomb_is_refused_without_filling_the_disk(tmp_path: Path) -> None:
    bomb = gzip_bomb(4 * 1024**3)  # 4 GiB unpacked, 4 MiB packed
    with pytest.raises(UsageError):
        extract(bomb, tmp_path / "outputs", "output outputs")
    assert not (tmp_path / "outputs" / "bomb").exists()
