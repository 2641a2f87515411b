"""Names of the runtime images that translated jobs run in.

One place for the tags, shared by the translators (which name them), the image build
(which tags them) and the tests. Bump ``RUNTIME_REVISION`` whenever an image's contents or
its launcher contract change, so executors never run a job on a stale image.
"""

from __future__ import annotations

RUNTIME_REVISION = "r3"

PYTHON_VERSIONS: tuple[str, ...] = ("3.11",)
"""Python versions a job may ask for: those with a runtime image (``runtime-images/build.sh``
builds each of them). A version is listed only once its image can be built here, so a job
asking for another is refused when it is submitted, naming these, instead of failing on an
executor that looks for an image nobody built. Offering one more is a line here plus its
image (``python:<ver>-slim`` as the base)."""

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
