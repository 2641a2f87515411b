#!/opt/venv/bin/python
"""shoal-launch: stage a python job's code, install its dependencies, then exec its command.

Usage (inside the ``shoal/python`` image)::

    shoal-launch -- ARGV...      run a job
    shoal-launch --install       build a prebuilt environment (the executor's install step)

Steps, each a small function below:

1. ``stage_code``: copy ``/code`` (a directory or a single file; may be absent) to ``/tmp/work``,
   leaving out ``__pycache__``, ``*.pyc`` and ``.git``, and chdir there.
2. ``find_plan``: resolve dependencies by the first rule that applies:

   - ``pip install ...`` lines in the docstring of the job's entry module (read with ``ast``,
     never executed). The entry module is the ``.py`` file the command runs (``python app.py``,
     ``app.py``, ``python /code/app.py``, ``python -m pkg.mod``) when it is part of the code,
     else the only ``.py`` file when there is exactly one. With several modules and no entry
     named, no docstring is read, and the launcher says so on stderr when one holds
     ``pip install`` lines.
   - ``pyproject.toml`` that declares a project (a ``[project]`` or ``[tool.poetry]`` table; a
     file of tool settings alone, such as ``[tool.ruff]``, is ignored). Only the project's
     dependencies are installed: ``poetry install --no-root`` with ``[tool.poetry]``, else
     ``pip install`` of ``[project] dependencies``. With ``SHOAL_INSTALL_PROJECT=1`` in the
     job's environment the project is installed too (``poetry install``, ``pip install .``),
     as it is when its dependencies are ``dynamic`` (only its build backend knows them). A
     project without dependencies installs nothing (the later rules are not read); a
     ``pyproject.toml`` that is not TOML fails the job as a dependency failure (exit 3).
   - ``requirements.txt`` (``pip install -r``); else ``setup.py`` (``pip install -e .``).
3. ``prepare_env``: install into a writable per-job venv under ``/tmp`` (the root filesystem is
   read-only). pip runs from ``/opt/venv`` with ``--python`` pointing at the job venv; poetry
   uses the job venv through ``VIRTUAL_ENV``. The job's ``python`` is that venv's (it is first on
   ``PATH``); a job without dependencies gets the empty venv ``/opt/jobenv``.
4. Every step's command line and output is appended to ``/outputs/requirements.log``, which
   exists only when a rule applied (a job without dependencies gets no log).
5. ``exec_command``: ``os.execvpe`` the user's argv (no shell, no re-quoting), so its exit code is
   the job's. When ``argv[0]`` starts with ``-`` or ends with ``.py``, ``python`` is put in front
   (``-- -c "import this"`` and ``-- app.py`` work).

Prebuilt environments: jobs never write a shared cache. For the docstring and
``requirements.txt`` rules (third-party requirements only), the executor reads the same rule from
the job's code, builds the environment in a separate install container and mounts it read-only
at ``/shoal-env``. The install container runs ``shoal-launch --install``: its only input is
``/code/plan.json`` (``env_plan``: the rule, its ``pip install`` commands and the requirement
files), it installs into ``/shoal-env`` and records the plan there (``.shoal-plan.json``); the
executor alone writes the completion marker ``.shoal-complete`` once the install succeeded. A job
uses ``/shoal-env`` only when the marker is there and the recorded plan equals its own; otherwise
(and for rules that install the job's own project: pyproject, setup.py, poetry, local files) it
installs into a per-job venv under ``/tmp``, with pip's and poetry's caches under ``/tmp`` too.

Environment: ``HOME`` becomes ``/tmp`` unless it is writable; everything else (``HTTP(S)_PROXY``,
``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_TRUSTED_HOST``, ...) passes through to pip,
poetry and the user's command.

Exit codes of the launcher itself (otherwise the user's command's code passes through):
2 usage (no command or a bad plan), 3 dependency install failed, 4 setup failed (staging, env
creation),
126 command not executable, 127 command not found.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

if sys.version_info >= (3, 11):  # noqa: UP036 - the image may run python 3.10
    import tomllib
else:  # pragma: no cover - python 3.10 images: tomli comes with poetry
    import tomli as tomllib

EXIT_USAGE = 2
EXIT_DEPS_FAILED = 3
EXIT_SETUP_FAILED = 4
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

EXCLUDED = ("__pycache__", "*.pyc", ".git")
COMPLETE_MARKER = ".shoal-complete"
"""Written into a prebuilt env by the executor (never by the install step) once it succeeded."""
PLAN_RECORD = ".shoal-plan.json"
"""The plan a prebuilt env was installed from, written by the install step."""
PLAN_FILE = "plan.json"
"""The install step's input, in ``/code``."""
ENV_RULES = ("docstring", "requirements")
INSTALL_PROJECT = "SHOAL_INSTALL_PROJECT"
"""Set to ``1`` in a job's environment to install a pyproject's project, not only its deps."""
PYTHONS = ("python", "python3")
"""Commands whose script argument names the entry module (also ``python3.X``)."""
PYTHON_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")
PIP_OPTIONS = ("--disable-pip-version-check", "--no-input")
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


class LaunchError(Exception):
    """A failure of the launcher itself; ``code`` is the process exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Layout:
    """Where things live; the defaults are the image's, tests pass temporary paths."""

    code: Path = Path("/code")
    work: Path = Path("/tmp/work")
    outputs: Path = Path("/outputs")
    prebuilt: Path = Path("/shoal-env")
    job_env: Path = Path("/tmp/shoal-env")
    empty_env: Path = Path("/opt/jobenv")
    tools: Path = field(default_factory=lambda: Path(sys.executable).parent)

    @property
    def log(self) -> Path:
        """The dependency log, kept with the job's outputs."""
        return self.outputs / "requirements.log"


@dataclass(frozen=True)
class Plan:
    """How to install a job's dependencies.

    ``installs`` are user-facing commands (``("pip", "install", "-r", "requirements.txt")``);
    ``key_inputs`` are the texts the rule read; ``cacheable``: third-party requirements only
    (an environment the executor may build once and share).
    """

    rule: str
    source: str
    installs: tuple[tuple[str, ...], ...]
    key_inputs: tuple[tuple[str, str], ...]
    cacheable: bool


Runner = Callable[[Sequence[str], Path, Mapping[str, str], BinaryIO], int]
Executor = Callable[[Sequence[str], Mapping[str, str]], int]


# --- argv -------------------------------------------------------------------------------------


def user_command(argv: Sequence[str]) -> list[str]:
    """The command to exec: drop a leading ``--``; put ``python`` before ``-x``/``*.py``."""
    args = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not args:
        raise LaunchError("no command given (usage: shoal-launch -- COMMAND [ARGS...])", EXIT_USAGE)
    if args[0].startswith("-") or args[0].endswith(".py"):
        args.insert(0, "python")
    return args


# --- staging ----------------------------------------------------------------------------------


def stage_code(code: Path, work: Path) -> None:
    """Copy ``code`` (directory, single file or absent) into ``work``, minus caches and .git."""
    work.mkdir(parents=True, exist_ok=True)
    if code.is_dir():
        shutil.copytree(
            code, work, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*EXCLUDED)
        )
    elif code.is_file():
        shutil.copy2(code, work / code.name)


# --- rules ------------------------------------------------------------------------------------


def docstring_pip_lines(source: str | bytes) -> list[list[str]]:
    """The ``pip install ...`` commands in a module's docstring, each split like a shell would.

    Only lines whose first word is exactly ``pip`` and second ``install`` count; a module that
    does not parse or has no docstring has none.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    doc = ast.get_docstring(tree)
    if not doc:
        return []
    commands = []
    for line in doc.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) > 2 and words[0] == "pip" and words[1] == "install":
            commands.append(words)
    return commands


def entry_name(command: Sequence[str], code_root: str = "/code") -> str | None:
    """The ``.py`` file ``command`` runs, relative to the staged code, or None.

    ``python [opts] app.py``, ``python -m pkg.mod`` (``pkg/mod.py``; a package's
    ``pkg/mod/__main__.py`` is tried by :func:`entry_module`), and a leading ``app.py``.
    Absolute paths count only under ``code_root`` (the code is staged in the work dir).
    """
    if not command:
        return None
    words = list(command)
    program = os.path.basename(words[0])
    if program.endswith(".py"):
        script: str | None = words[0]
    elif program in PYTHONS or (program.startswith("python3.") and program[8:].isdigit()):
        script = _python_script(words[1:])
    else:
        return None
    if script is None:
        return None
    path = os.path.normpath(script)
    if os.path.isabs(path):
        root = code_root.rstrip("/") + "/"
        if not path.startswith(root):
            return None
        path = path[len(root) :]
    return None if path.startswith("..") else path


def _python_script(args: Sequence[str]) -> str | None:
    """The script (or ``-m`` module as a path) in a python interpreter's arguments."""
    words = iter(args)
    for word in words:
        if word == "-m":
            module = next(words, "")
            return module.replace(".", "/") + ".py" if module else None
        if word == "-c" or word == "-":
            return None
        if word in PYTHON_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def modules_in(work: Path) -> list[Path]:
    """Every ``.py`` file of the job's code, sorted."""
    return sorted(p for p in work.rglob("*.py") if p.is_file())


def entry_module(work: Path, command: Sequence[str], code_root: str = "/code") -> Path | None:
    """The module whose docstring may list requirements: the one the command runs when it is
    part of the code, else the only ``.py`` file, else None."""
    name = entry_name(command, code_root)
    if name is not None:
        main = (name[:-3] if name.endswith(".py") else name) + "/__main__.py"
        for candidate in (name, main):
            if (work / candidate).is_file():
                return work / candidate
    modules = modules_in(work)
    return modules[0] if len(modules) == 1 else None


def unread_docstrings(work: Path) -> list[str]:
    """Modules with ``pip install`` docstring lines, when no entry module could be chosen."""
    found = [p for p in modules_in(work) if docstring_pip_lines(p.read_bytes())]
    return [p.relative_to(work).as_posix() for p in found]


def project_table(text: str) -> tuple[str, list[str] | None] | None:
    """What a pyproject.toml declares: ``("poetry", None)`` for a ``[tool.poetry]`` table,
    ``("project", deps)`` for a ``[project]`` table (``deps`` None when they are dynamic),
    None for a file of tool settings only. ``LaunchError`` when it is not valid TOML."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LaunchError(f"pyproject.toml is not valid TOML: {exc}", EXIT_DEPS_FAILED) from exc
    tool = data.get("tool")
    if isinstance(tool, dict) and isinstance(tool.get("poetry"), dict):
        return ("poetry", None)
    project = data.get("project")
    if not isinstance(project, dict):
        return None
    dynamic = project.get("dynamic", [])
    if isinstance(dynamic, list) and "dependencies" in dynamic:
        return ("project", None)
    deps = project.get("dependencies", [])
    return ("project", [str(d) for d in deps] if isinstance(deps, list) else None)


def has_poetry_section(pyproject: str) -> bool:
    """Whether a pyproject.toml has a ``[tool.poetry]`` table (or a sub-table of it)."""
    declared = project_table(pyproject)
    return declared is not None and declared[0] == "poetry"


def requirements_are_local(lines: Sequence[str]) -> bool:
    """Whether requirement lines refer to local files (never part of a shared environment)."""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(LOCAL_REQUIREMENT_PREFIXES) or " @ file:" in stripped:
            return True
    return False


def docstring_plan(work: Path, command: Sequence[str]) -> Plan | None:
    """The docstring rule's plan for the entry module, or None."""
    module = entry_module(work, command)
    if module is None:
        return None
    commands = docstring_pip_lines(module.read_bytes())
    if not commands:
        return None
    args = [a for c in commands for a in c[2:]]
    text = "\n".join(shlex.join(c) for c in commands)
    return Plan(
        "docstring",
        module.relative_to(work).as_posix(),
        tuple(tuple(c) for c in commands),
        (("docstring", text),),
        cacheable=not requirements_are_local(args),
    )


def pyproject_plan(work: Path, install_project: bool) -> Plan | None:
    """The pyproject rule's plan: its dependencies (or project), None when it declares none."""
    pyproject = work / "pyproject.toml"
    if not pyproject.is_file():
        return None
    text = pyproject.read_text(errors="replace")
    declared = project_table(text)
    if declared is None:
        return None
    kind, deps = declared
    step: tuple[str, ...]
    if kind == "poetry":
        rule, step = (
            "poetry",
            ("poetry", "install") if install_project else ("poetry", "install", "--no-root"),
        )
    elif install_project or deps is None:
        rule, step = "pyproject", ("pip", "install", ".")
    elif deps:
        rule, step = "pyproject", ("pip", "install", *deps)
    else:
        return None
    return Plan(rule, "pyproject.toml", (step,), (("pyproject.toml", text),), cacheable=False)


def find_plan(
    work: Path, command: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> Plan | None:
    """The first dependency rule that applies to ``work`` for ``command``, or None."""
    install_project = (environ or {}).get(INSTALL_PROJECT, "") == "1"
    plan = docstring_plan(work, command) or pyproject_plan(work, install_project)
    if plan is not None:
        return plan
    if (work / "pyproject.toml").is_file() and project_table(read_text(work / "pyproject.toml")):
        return None  # a project without dependencies: nothing to install
    requirements = work / "requirements.txt"
    if requirements.is_file():
        text = read_text(requirements)
        return Plan(
            "requirements",
            "requirements.txt",
            (("pip", "install", "-r", "requirements.txt"),),
            (("requirements.txt", text),),
            cacheable=not requirements_are_local(text.splitlines()),
        )
    if (work / "setup.py").is_file():
        text = (work / "setup.py").read_text(errors="replace")
        return Plan(
            "setup.py",
            "setup.py",
            (("pip", "install", "-e", "."),),
            (("setup.py", text),),
            cacheable=False,
        )
    return None


# --- prebuilt environments -------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A file's text as UTF-8 (undecodable bytes replaced), with universal newlines."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def env_plan(plan: Plan) -> dict[str, object]:
    """The install step's input for a cacheable plan (the executor builds the same dict)."""
    files = dict(plan.key_inputs) if plan.rule == "requirements" else {}
    return {"rule": plan.rule, "installs": [list(step) for step in plan.installs], "files": files}


def prebuilt_fits(env: Path, plan: Plan) -> bool:
    """Whether ``env`` is a complete prebuilt environment installed from ``plan``."""
    try:
        if not (env / COMPLETE_MARKER).is_file():
            return False
        return bool(json.loads((env / PLAN_RECORD).read_text()) == env_plan(plan))
    except (OSError, ValueError):
        return False


def plan_from_file(path: Path) -> Plan:
    """The plan in ``path`` (``env_plan``'s shape); ``LaunchError`` when it is not one."""
    try:
        data = json.loads(path.read_text())
        rule, installs, files = data["rule"], data["installs"], data["files"]
        steps = tuple(tuple(str(word) for word in step) for step in installs)
        texts = {str(name): str(text) for name, text in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LaunchError(f"cannot read the install plan {path}: {exc}", EXIT_USAGE) from exc
    if rule not in ENV_RULES or not steps or any(s[:2] != ("pip", "install") for s in steps):
        raise LaunchError(f"{path} is not an install plan of pip install steps", EXIT_USAGE)
    if any("/" in name or name.startswith(".") for name in texts):
        raise LaunchError(f"{path} names a file outside the work dir", EXIT_USAGE)
    return Plan(rule, PLAN_FILE, steps, tuple(sorted(texts.items())), cacheable=True)


def install_prebuilt(layout: Layout, environ: Mapping[str, str], runner: Runner) -> int:
    """The install step: build ``layout.prebuilt`` from ``code/plan.json`` and record the plan."""
    plan = plan_from_file(layout.code / PLAN_FILE)
    try:
        layout.work.mkdir(parents=True, exist_ok=True)
        for name, text in plan.key_inputs:
            (layout.work / name).write_text(text)
        log = open_log(layout)
    except OSError as exc:
        raise LaunchError(f"cannot stage the install plan: {exc}", EXIT_SETUP_FAILED) from exc
    with log:
        write(log, f"rule: {plan.rule}; installing the shared environment {layout.prebuilt}\n")
        make_env(layout.prebuilt)
        install(plan, layout.prebuilt, layout, tool_environ(environ), log, runner)
        record = json.dumps(env_plan(plan), sort_keys=True)
        (layout.prebuilt / PLAN_RECORD).write_text(record)
    return 0


# --- installing -------------------------------------------------------------------------------


def job_environ(environ: Mapping[str, str], env: Path) -> dict[str, str]:
    """The environment for install steps and the user's command, with ``env`` active."""
    result = dict(environ)
    home = result.get("HOME", "")
    if not home or not os.access(home, os.W_OK):
        result["HOME"] = "/tmp"
    result.pop("PYTHONHOME", None)
    result["VIRTUAL_ENV"] = str(env)
    result["PATH"] = os.pathsep.join([str(env / "bin"), result.get("PATH", os.defpath)])
    return result


def tool_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Extra settings for pip and poetry runs (no prompts, no venv creation)."""
    result = dict(environ)
    result.setdefault("PIP_ROOT_USER_ACTION", "ignore")
    result["POETRY_VIRTUALENVS_CREATE"] = "false"
    result["POETRY_NO_INTERACTION"] = "1"
    result.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    return result


def tool_argv(install: Sequence[str], env: Path, tools: Path) -> list[str]:
    """The real command line for a user-facing ``pip install``/``poetry install``."""
    if install[0] == "poetry":
        return [str(tools / "poetry"), *install[1:], "--no-interaction"]
    return [
        str(tools / "python"),
        "-m",
        "pip",
        "--python",
        str(env / "bin" / "python"),
        *install[1:2],
        *PIP_OPTIONS,
        *install[2:],
    ]


def run_logged(argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: BinaryIO) -> int:
    """Run ``argv`` with stdout and stderr appended to ``log``; return its exit code."""
    log.flush()
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        check=False,
    ).returncode


def create_env(path: Path) -> None:
    """A fresh venv without pip (pip runs from /opt/venv with ``--python``)."""
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(path)


def install(
    plan: Plan, env: Path, layout: Layout, environ: Mapping[str, str], log: BinaryIO, runner: Runner
) -> None:
    """Run the plan's install steps into ``env``; raise LaunchError on the first failure."""
    step_env = job_environ(environ, env)
    for step in plan.installs:
        shown = shlex.join(step)
        write(log, f"$ {shown}\n")
        code = runner(tool_argv(step, env, layout.tools), layout.work, step_env, log)
        write(log, f"[exit {code}]\n")
        if code != 0:
            raise LaunchError(
                f"dependency install failed ({shown} exited {code}); see {layout.log}",
                EXIT_DEPS_FAILED,
            )


def prepare_env(
    plan: Plan, layout: Layout, environ: Mapping[str, str], log: BinaryIO, runner: Runner
) -> Path:
    """The venv the user's command runs in: the prebuilt one when it fits, else a per-job one."""
    write(log, f"rule: {plan.rule} ({plan.source})\n")
    if plan.cacheable and prebuilt_fits(layout.prebuilt, plan):
        write(log, f"using the environment prebuilt by the executor ({layout.prebuilt})\n")
        return layout.prebuilt
    reason = "installs local files" if not plan.cacheable else "no prebuilt environment"
    write(log, f"installing for this job only ({reason})\n")
    make_env(layout.job_env)
    install(plan, layout.job_env, layout, tool_environ(environ), log, runner)
    return layout.job_env


def make_env(path: Path) -> None:
    """``create_env`` with its failures turned into a LaunchError."""
    try:
        create_env(path)
    except OSError as exc:
        raise LaunchError(
            f"cannot create the job environment {path}: {exc}", EXIT_SETUP_FAILED
        ) from exc


# --- logging and exec -------------------------------------------------------------------------


def write(log: BinaryIO, text: str) -> None:
    """Append a launcher line to the dependency log."""
    log.write(text.encode())
    log.flush()


def open_log(layout: Layout) -> BinaryIO:
    """Open the dependency log for appending, creating ``/outputs`` when missing."""
    layout.outputs.mkdir(parents=True, exist_ok=True)
    return layout.log.open("ab")


def shebang_argv(argv: Sequence[str], path: str | None) -> list[str] | None:
    """``argv`` run through the script's ``#!`` interpreter, as the kernel would, or None.

    Used when exec fails with EACCES: a script in a ``noexec`` mount (the job's ``/tmp``, where
    per-job console scripts live) can still be run by handing it to its interpreter.
    """
    if path is None:
        return None
    try:
        with open(path, "rb") as script:
            first = script.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").strip().split(None, 1)
    return [*words, path, *argv[1:]] if words else None


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Replace this process with ``argv`` (looked up on ``env``'s PATH); only returns on error."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], list(argv), dict(env))
    except FileNotFoundError:
        raise LaunchError(f"command not found: {argv[0]}", EXIT_NOT_FOUND) from None
    except PermissionError:
        fallback = shebang_argv(argv, find_on_path(argv[0], env.get("PATH", os.defpath)))
        if fallback is None:
            raise LaunchError(f"command not executable: {argv[0]}", EXIT_NOT_EXECUTABLE) from None
        try:
            os.execvpe(fallback[0], fallback, dict(env))
        except OSError as exc:
            raise LaunchError(f"cannot run {argv[0]}: {exc}", EXIT_NOT_EXECUTABLE) from None
    except OSError as exc:
        raise LaunchError(f"cannot run {argv[0]}: {exc}", EXIT_NOT_EXECUTABLE) from None
    return 0  # pragma: no cover - execvpe does not return


def find_on_path(name: str, path: str) -> str | None:
    """The first file called ``name`` on ``path`` (executable or not), like a shell's lookup."""
    if os.sep in name:
        return name if os.path.isfile(name) else None
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate):
            return candidate
    return None


def launch(
    argv: Sequence[str],
    layout: Layout,
    environ: Mapping[str, str],
    runner: Runner = run_logged,
    execute: Executor = exec_command,
) -> int:
    """Stage, install, exec: the whole launcher; raises LaunchError on its own failures."""
    command = user_command(argv)
    try:
        stage_code(layout.code, layout.work)
        os.chdir(layout.work)
    except OSError as exc:
        raise LaunchError(f"cannot stage {layout.code}: {exc}", EXIT_SETUP_FAILED) from exc
    plan = find_plan(layout.work, command, environ)
    if plan is None:
        env = layout.empty_env
        if entry_module(layout.work, command) is None and (
            unread := unread_docstrings(layout.work)
        ):
            note(
                f"pip install lines in {', '.join(unread)} not used: with several modules the "
                "command must run the one that lists them (python app.py)"
            )
    else:
        try:
            log = open_log(layout)
        except OSError as exc:
            raise LaunchError(f"cannot write {layout.log}: {exc}", EXIT_SETUP_FAILED) from exc
        with log:
            env = prepare_env(plan, layout, environ, log, runner)
    return execute(command, job_environ(tool_environ(environ), env))


def note(text: str) -> None:
    """A launcher remark for the job's own stderr (its logs)."""
    print(f"shoal-launch: note: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the launcher, print its own failures as one line on stderr."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if list(args) == ["--install"]:
            return install_prebuilt(Layout(), os.environ, run_logged)
        return launch(args, Layout(), os.environ)
    except LaunchError as exc:
        print(f"shoal-launch: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
