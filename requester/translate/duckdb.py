"""``duckdb`` jobs: the DuckDB CLI with the user's argv, no shell in between."""

from __future__ import annotations

from shoal.images import duckdb_image
from shoal.model import DockerParams, SpecConfig, Task

from .base import argv_param


class DuckDBTranslator:
    """``duckdb`` → docker on ``shoal/duckdb``, argv passed through unchanged."""

    job_type = "duckdb"

    def translate(self, task: Task) -> Task:
        """Run ``duckdb ARGV`` in the duckdb image."""
        argv = argv_param(task, self.job_type)
        params = DockerParams(image=duckdb_image(), entrypoint=["duckdb"], parameters=argv)
        return task.model_copy(
            update={"engine": SpecConfig(type="docker", params=params.model_dump())}
        )
