"""Which shareable environment a python job needs, read by the executor from the job's code.

The python image's launcher resolves dependencies by the first rule that applies (see
``runtime-images/python/launcher.py``, ``find_plan``). Two of its rules name third-party
requirements only, so their environment can be built once and shared: ``pip install ...`` lines
in the docstring of the job's entry module (the ``.py`` file its command runs, else the only one),
and a ``requirements.txt`` without local paths, when no ``pyproject.toml`` declaring a project
comes first. This module reads those two rules from the ``/code`` tars the executor is about to
place and the job's command, and gives the install step's input (:func:`env_plan`, the same dict
as the launcher's ``env_plan``) and the key of the environment (:func:`env_key`).

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
import tomllib
from collections.abc import Iterable, Mapping, Sequence
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
PYTHONS = ("python", "python3")
PYTHON_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


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


def code_text(data: bytes) -> str:
    """A code file's text (UTF-8, bad bytes replaced, newlines made ``\\n``)."""
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def user_command(argv: Sequence[str]) -> list[str]:
    """The command the launcher execs for its ``argv`` (``python`` before ``-x``/``*.py``)."""
    args = list(argv[1:] if argv and argv[0] == "--" else argv)
    if args and (args[0].startswith("-") or args[0].endswith(".py")):
        args.insert(0, "python")
    return args


def _python_script(args: Sequence[str]) -> str | None:
    words = iter(args)
    for word in words:
        if word == "-m":
            module = next(words, "")
            return module.replace(".", "/") + ".py" if module else None
        if word in ("-c", "-"):
            return None
        if word in PYTHON_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def entry_name(command: Sequence[str]) -> str | None:
    """The ``.py`` file ``command`` runs, relative to ``/code`` (the launcher's rule)."""
    if not command:
        return None
    program = posixpath.basename(command[0])
    if program.endswith(".py"):
        script: str | None = command[0]
    elif program in PYTHONS or (program.startswith("python3.") and program[8:].isdigit()):
        script = _python_script(command[1:])
    else:
        return None
    if script is None:
        return None
    path = posixpath.normpath(script)
    if posixpath.isabs(path):
        if not path.startswith(CODE_ROOT + "/"):
            return None
        path = path[len(CODE_ROOT) + 1 :]
    return None if path.startswith("..") else path


def entry_module(files: Mapping[str, bytes], command: Sequence[str]) -> str | None:
    """The module whose docstring may list requirements (the launcher's ``entry_module``)."""
    name = entry_name(command)
    if name is not None:
        main = (name[:-3] if name.endswith(".py") else name) + "/__main__.py"
        for candidate in (name, main):
            if candidate in files:
                return candidate
    modules = [name for name in files if name.endswith(".py")]
    return modules[0] if len(modules) == 1 else None


def declares_project(text: str) -> bool:
    """Whether a pyproject.toml declares a project (``[project]`` or ``[tool.poetry]``);
    an invalid one counts (the launcher refuses it, nothing is shared)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return True
    tool = data.get("tool")
    return isinstance(data.get("project"), dict) or (
        isinstance(tool, dict) and isinstance(tool.get("poetry"), dict)
    )


def env_plan(files: Mapping[str, bytes], argv: Sequence[str] = ()) -> dict[str, Any] | None:
    """The install step's input for a job whose code is ``files`` and whose launcher arguments
    are ``argv``; None when its environment is not shareable."""
    module = entry_module(files, user_command(argv))
    if module is not None:
        commands = docstring_pip_lines(files[module])
        if commands:
            if requirements_are_local(a for c in commands for a in c[2:]):
                return None
            return {"rule": "docstring", "installs": commands, "files": {}}
    if "pyproject.toml" in files and declares_project(code_text(files["pyproject.toml"])):
        return None
    if "requirements.txt" not in files:
        return None
    text = code_text(files["requirements.txt"])
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
