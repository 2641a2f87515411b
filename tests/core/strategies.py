"""Hypothesis strategies for the job model."""

from __future__ import annotations

from datetime import UTC

from hypothesis import strategies as st

from shoal.model import (
    RESERVED_ROOTS,
    InputSource,
    Job,
    Network,
    NetworkType,
    Resources,
    ResultPath,
    SpecConfig,
    Task,
    Timeouts,
    new_job_id,
)

names = st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True)
texts = st.text(max_size=20)
paths = (
    st.lists(names, min_size=1, max_size=3)
    .filter(lambda parts: parts[0] not in RESERVED_ROOTS)
    .map(lambda parts: "/" + "/".join(parts))
)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)

engines = st.one_of(
    st.builds(
        SpecConfig,
        type=st.just("docker"),
        params=st.fixed_dictionaries({"image": names, "parameters": st.lists(texts, max_size=3)}),
    ),
    st.builds(
        SpecConfig,
        type=st.sampled_from(["python", "duckdb"]),
        params=st.fixed_dictionaries({"command": names, "arguments": st.lists(texts, max_size=4)}),
    ),
)
sources = st.one_of(
    st.builds(
        SpecConfig,
        type=st.just("url"),
        params=st.builds(lambda n: {"url": f"https://x/{n}"}, names),
    ),
    st.builds(SpecConfig, type=st.just("local"), params=st.builds(lambda p: {"path": p}, paths)),
)


@st.composite
def tasks(draw: st.DrawFn) -> Task:
    """A valid task: unique input targets and aliases, unique outputs."""
    targets = draw(st.lists(paths, unique=True, max_size=3))
    inputs = [
        InputSource(source=draw(sources), alias=f"in{i}", target=t) for i, t in enumerate(targets)
    ]
    out_paths = draw(st.lists(paths, unique=True, min_size=1, max_size=2))
    outputs = [ResultPath(name=f"out{i}", path=p) for i, p in enumerate(out_paths)]
    return Task(
        name=draw(names),
        engine=draw(engines),
        env=draw(st.dictionaries(env_names, texts, max_size=3)),
        meta=draw(st.dictionaries(names, texts, max_size=2)),
        inputs=inputs,
        outputs=outputs,
        resources=Resources(
            cpu=draw(st.one_of(st.none(), st.floats(0.001, 64))),
            memory=draw(st.one_of(st.none(), st.integers(1, 2**40))),
            gpu=draw(st.integers(0, 4)),
        ),
        network=draw(
            st.one_of(
                st.none(),
                st.builds(Network, type=st.sampled_from([NetworkType.NONE, NetworkType.FULL])),
                st.builds(
                    Network, type=st.just(NetworkType.HTTP), domains=st.lists(names, max_size=2)
                ),
            )
        ),
        timeouts=Timeouts(execution=draw(st.one_of(st.none(), st.floats(0.5, 1e6)))),
    )


jobs = st.builds(
    Job,
    id=st.builds(new_job_id),
    name=texts,
    labels=st.dictionaries(names, texts, max_size=3),
    tasks=st.lists(tasks(), min_size=1, max_size=1),
    created_at=st.datetimes(timezones=st.just(UTC)),
)
