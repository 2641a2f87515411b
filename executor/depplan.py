"""Which shareable environment a python job needs, read by the executor from the job's code.

The python image's launcher resolves dependencies by the first rule that applies (see
``runtime-images/python/launcher.py``, ``find_plan``). Two of its rules name third-party
requirements only, so their environment can be built once and shared: ``pip install ...`` lines
in the docstring of a single-module job, and a ``requirements.txt`` without local paths. This
module reads those two rules from the ``/code`` tars the executor is about to place, and gives the
install step's input (:func:`env_plan`, the same dict as the launcher's ``env_plan``) and the key
of the environment (:func:`env_key`).

Guarantees: the key is computed here, by the executor, from the plan, the image's ID and every
``PIP_*`` variable the install step sees; the job cannot choose it. The code is parsed (``ast``),
never run. Should this reading ever differ from the launcher's, the launcher sees that the
prebuilt environment's recorded plan is not its own and installs for the job alone: a mismatch
costs time, never correctness.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import posixpath
import shlex
import tarfile
from collections.abc import Iterable, Mapping
from typing import Any

CODE_ROOT = "/code"
EXCLUDED_PARTS = ("__pycache__", ".git")
LOCAL_REQUIREMENT_PREFIXES = (
    "-e",
    "--editable",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    ".",
    "/",
    "~",
    "file:",
)
"""The launcher's list: requirement lines that point at local files are never shared."""
PIP_PREFIX = "PIP_"


def code_files(tars: Iterable[bytes]) -> dict[str, bytes]:
    """The regular files of the ``/code`` tars (path relative to ``/code`` → bytes).

    Folders the launcher leaves out when staging (``__pycache__``, ``.git``) are left out.
    """
    files: dict[str, bytes] = {}
    for data in tars:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                name = posixpath.normpath(member.name)
                if not member.isfile() or any(p in EXCLUDED_PARTS for p in name.split("/")):
                    continue
                handle = archive.extractfile(member)
                files[name] = handle.read() if handle else b""
    return files


def docstring_pip_lines(source: bytes) -> list[list[str]]:
    """The ``pip install ...`` commands in a module's docstring (as the launcher reads them)."""
    try:
        doc = ast.get_docstring(ast.parse(source))
    except (SyntaxError, ValueError):
        return []
    commands = []
    for line in (doc or "").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) > 2 and words[0] == "pip" and words[1] == "install":
            commands.append(words)
    return commands


def requirements_are_local(lines: Iterable[str]) -> bool:
    """Whether requirement lines refer to local files."""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(LOCAL_REQUIREMENT_PREFIXES) or " @ file:" in stripped:
            return True
    return False


def _text(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def env_plan(files: Mapping[str, bytes]) -> dict[str, Any] | None:
    """The install step's input for a job whose code is ``files``; None when not shareable."""
    modules = [name for name in files if name.endswith(".py")]
    if len(modules) == 1:
        commands = docstring_pip_lines(files[modules[0]])
        if commands:
            if requirements_are_local(a for c in commands for a in c[2:]):
                return None
            return {"rule": "docstring", "installs": commands, "files": {}}
    if "pyproject.toml" in files or "requirements.txt" not in files:
        return None
    text = _text(files["requirements.txt"])
    if requirements_are_local(text.splitlines()):
        return None
    return {
        "rule": "requirements",
        "installs": [["pip", "install", "-r", "requirements.txt"]],
        "files": {"requirements.txt": text},
    }


def pip_env(env: Mapping[str, str]) -> dict[str, str]:
    """The job's ``PIP_*`` variables: all the install step gets from the job's environment."""
    return {k: v for k, v in env.items() if k.startswith(PIP_PREFIX)}


def env_key(plan: Mapping[str, Any], image_id: str, pip: Mapping[str, str]) -> str:
    """The sha256 naming the environment built from ``plan`` on ``image_id`` with ``pip``."""
    material = {"plan": plan, "image": image_id, "pip": dict(sorted(pip.items()))}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
