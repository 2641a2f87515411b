"""The committed JSON Schemas (``docs/schema``) are those the models generate today."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.schemas import MESSAGES, schema_text

FOLDER = Path(__file__).resolve().parents[2] / "docs" / "schema"


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_committed_schema_matches_the_model(name: str) -> None:
    committed = (FOLDER / f"{name}.schema.json").read_text()
    assert committed == schema_text(name), (
        f"docs/schema/{name}.schema.json is out of date: run shoal schema --write docs/schema"
    )


def test_no_stale_schema_files() -> None:
    assert {p.name.removesuffix(".schema.json") for p in FOLDER.glob("*.json")} == set(MESSAGES)
