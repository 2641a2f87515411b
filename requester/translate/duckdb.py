"""``duckdb`` jobs: the DuckDB CLI with the user's argv, no shell in between.

The CLI reads ``duckdb [OPTIONS] FILENAME [SQL]``, so Bacalhau's form ``shoal exec duckdb
"select 42 as answer"`` would open a database file named after the query (in ``/outputs``, the
image's working directory) and print nothing. The one change made to the argv: when its first
positional word (not an option, nor an option's value) reads as SQL — it starts with a statement
keyword (:data:`SQL_KEYWORDS`) followed by a space or ``;`` — the in-memory database
``:memory:`` is put before it, so the query runs and its result is printed. A database file
named like a statement can still be opened with a path (``./select 1.db``).
"""

from __future__ import annotations

import re

from shoal.images import duckdb_image
from shoal.model import DockerParams, SpecConfig, Task

from .base import argv_param

MEMORY_DATABASE = ":memory:"
SQL_KEYWORDS = (
    "alter",
    "attach",
    "call",
    "checkpoint",
    "copy",
    "create",
    "delete",
    "describe",
    "detach",
    "drop",
    "explain",
    "export",
    "from",
    "import",
    "insert",
    "install",
    "load",
    "pivot",
    "pragma",
    "select",
    "set",
    "show",
    "summarize",
    "table",
    "unpivot",
    "update",
    "use",
    "vacuum",
    "values",
    "with",
)
"""Words that start a DuckDB statement (``from`` too: DuckDB's FROM-first syntax)."""
OPTIONS_WITH_VALUE = frozenset(
    {"-c", "-cmd", "-s", "-f", "-init", "-newline", "-nullvalue", "-separator", "-storage-version"}
)
"""The CLI's options that take the next word as their value (``duckdb -help``)."""
_STATEMENT = re.compile(r"\s*(?:" + "|".join(SQL_KEYWORDS) + r")(?:[\s;]|$)", re.IGNORECASE)


def reads_as_sql(word: str) -> bool:
    """Whether ``word`` starts with a statement keyword followed by a space, ``;`` or its end,
    and holds more than the keyword (a lone ``show`` stays a file name)."""
    return bool(_STATEMENT.match(word)) and bool(re.search(r"[\s;]", word.strip()))


def with_memory_database(argv: list[str]) -> list[str]:
    """``argv`` with ``:memory:`` before its first positional word when that reads as SQL."""
    skip = False
    for index, word in enumerate(argv):
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in OPTIONS_WITH_VALUE
        else:
            if reads_as_sql(word):
                return [*argv[:index], MEMORY_DATABASE, *argv[index:]]
            return argv
    return argv


class DuckDBTranslator:
    """``duckdb`` → docker on ``shoal/duckdb``; the argv passes through, a leading query
    gets the in-memory database (see the module docstring)."""

    job_type = "duckdb"
    engine = "docker"

    def translate(self, task: Task) -> Task:
        """Run ``duckdb ARGV`` in the duckdb image."""
        argv = with_memory_database(argv_param(task, self.job_type))
        params = DockerParams(image=duckdb_image(), entrypoint=["duckdb"], parameters=argv)
        return task.model_copy(
            update={"engine": SpecConfig(type="docker", params=params.model_dump())}
        )
