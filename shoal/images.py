"""Names of the runtime images that translated jobs run in.

One place for the tags, shared by the translators (which name them), the image build
(which tags them) and the tests. Bump ``RUNTIME_REVISION`` whenever an image's contents or
its launcher contract change, so executors never run a job on a stale image.
"""

from __future__ import annotations

RUNTIME_REVISION = "r2"

PYTHON_VERSIONS: tuple[str, ...] = ("3.10", "3.11", "3.12", "3.13")
"""Python versions a job may ask for; ``make images`` builds the default one offline."""

DEFAULT_PYTHON_VERSION = "3.11"

DUCKDB_VERSION = "1.5.6"

LAUNCHER_PATH = "/usr/local/bin/shoal-launch"
"""The python image's launcher; its argv after ``--`` is the user's command."""

ENV_MOUNT = "/shoal-env"
"""Where the python image's prebuilt environment is: written by the executor's install step,
mounted read-only in jobs."""


def python_image(version: str) -> str:
    """The tag of the python runtime image for ``version``."""
    return f"shoal/python:{version}-{RUNTIME_REVISION}"


def duckdb_image() -> str:
    """The tag of the duckdb runtime image."""
    return f"shoal/duckdb:{DUCKDB_VERSION}-{RUNTIME_REVISION}"


def runtime_images() -> frozenset[str]:
    """Every image a built-in translator may name (executors always allow them)."""
    return frozenset({*(python_image(v) for v in PYTHON_VERSIONS), duckdb_image()})
