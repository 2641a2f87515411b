"""Strategies for arbitrary JSON values and for near-valid variants of a JSON document."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

_STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "docker",
            "python",
            "duckdb",
            "inline",
            "url",
            "local",
            "/",
            "..",
            "/../etc",
            "http://x",
            "1e400",
            "9" * 400,
            "nan",
            "-1",
            "0",
            "500m",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _STRINGS,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_STRINGS, inner, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """``value`` as JSON, ``NaN``/``Infinity`` included (Python's and many clients' habit)."""
    return json.dumps(value, allow_nan=True).encode()


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if isinstance(value, dict | list) else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _containers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _containers(item, (*path, index))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated(draw: st.DrawFn, document: Any, max_mutations: int = 3) -> Any:
    """``document`` with a few keys replaced, removed or added, or items changed."""
    result = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_mutations))):
        places = _containers(result)
        if not places:
            break
        container = _at(result, draw(st.sampled_from(places)))
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "add" or not keys:
            if isinstance(container, dict):
                container[draw(_STRINGS)] = draw(json_values)
            else:
                container.append(draw(json_values))
        elif action == "replace":
            container[draw(st.sampled_from(keys))] = draw(json_values)
        else:
            del container[draw(st.sampled_from(keys))]
    return result
