"""Pure-Python dependencies of ``python --runtime=wasm`` jobs, resolved on the executor host.

Reading: the job's requirements come from its ``/code`` by the python image's launcher's first
rules (``runtime-images/python/launcher.py``, read here with ``docker.depplan``): ``pip
install`` lines in the docstring of the entry module, else the ``[project] dependencies`` of a
``pyproject.toml`` that declares a project (one without dependencies installs nothing), else
``requirements.txt``. ``setup.py`` is not read, and nothing of the job is ever built or run on
the host: a ``[tool.poetry]`` project or ``dynamic`` dependencies, a pip option (``-r``,
``--index-url``...), a URL or local path, or a line that is not a PEP 508 requirement fail
the job (``dependencies failed: ...``) saying which. Markers are evaluated for the guest
(``sys_platform == "wasi"``, Python 3.15); requirements whose markers do not hold are dropped.

Built-in packages (``PythonRuntime.built_in``: the distributions whose ``dist-info`` the
interpreter's standard library zip holds) are never installed: a requirement on one installs
nothing, one whose specifier leaves its version out fails the job (a built-in cannot be
replaced), and its extras add nothing; when every requirement is built in, pip does not run.
The others are installed by the host's pip (the executor's own ``sys.executable -m pip``)
with ``--target``, ``--only-binary=:all: --platform any --implementation py --abi none`` and
the interpreter's Python version: only pure-Python (``py3-none-any``) wheels are accepted,
nothing is built. The built-ins take part in that resolution as stub wheels (``dist-info``
only, no requirements, tagged ``py3XY`` with a build number so that pip prefers them to an
index's wheel of the same version) in a ``--find-links`` folder, each pinned to its version
by a ``--constraint``: a dependency on numpy is met by the built-in numpy, one on another
version fails. Every built-in distribution pip put in the target (the files its ``RECORD``
lists: normally the stub's ``dist-info`` alone) is then removed. A package without a
pure-Python wheel fails the job naming it (``dependencies failed: lightgbm has no pure-Python
wheel ...``), pip's output being the job's ``requirements.log``.

Package index: pip looks only where the executor's settings say (``wasm_package_index``,
default PyPI, through ``upstream_proxy`` when set), reading no pip configuration file and
none of the executor's ``PIP_*`` variables; the job's environment never reaches it.

Cache: one folder per requirement set in the node's ``COMPILED_DIR``, named after the sha256
of the normalized requirements, the interpreter's version and built-ins, and the index. It is
built as ``<name>.partial`` and renamed into place under a lock file (and an in-process
lock), so that concurrent jobs of a node with the same set run pip once; later jobs reuse it.
Each job sees it read-only at the build's ``site-packages`` path
(``/usr/local/lib/python3.15/site-packages``, a preopen nested in ``/usr/local/lib``'s: the
longest prefix wins), put on ``sys.path`` after the standard library zip by
``PythonRuntime.argv`` (the interpreter runs isolated and without ``site``: it reads no
``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from shoal.executor import failures
from shoal.executor.engines.docker.depcache import tar_of
from shoal.executor.engines.docker.depplan import (
    code_text,
    declares_project,
    docstring_pip_lines,
    entry_module,
)
from shoal.executor.engines.wasm.modules import COMPILED_DIR
from shoal.executor.engines.wasm.python import ARGV0, PythonRuntime
from shoal.executor.failures import JobError
from shoal.executor.settings import ExecutorSettings

PREFIX = "python-packages-"
LOCK_POLL = 0.1
"""Seconds between tries of another executor's build lock."""
HARMLESS_FLAGS = frozenset(
    {"-U", "--upgrade", "-q", "--quiet", "-v", "--verbose", "--no-cache-dir", "--user"}
)
"""Flags of a docstring's ``pip install`` line that change nothing here (and take no value):
left out; any other option is refused."""
LOG_NAME = "requirements.log"
REFUSE_NATIVE = "a WASI interpreter cannot load native code: run it with --runtime=docker"
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)(?: \(from ([^)]+)\))?")
_UNREACHABLE = ("Could not fetch URL", "Retrying (", "NewConnectionError", "ProxyError")


def fail(detail: str, log: str | None = None) -> JobError:
    """A ``dependencies failed`` error (one line), with ``log`` as ``requirements.log``."""
    tar = tar_of({LOG_NAME: log.encode()}) if log is not None else None
    return JobError(failures.DEPS_FAILED, " ".join(detail.split()), tar)


def guest_markers(version: str) -> dict[str, str]:
    """The marker environment of the interpreter (CPython ``version`` on wasm32-wasip1)."""
    major, minor = version.split(".")[:2]
    return {
        "implementation_name": "cpython",
        "implementation_version": version,
        "os_name": "posix",
        "platform_machine": "wasm32",
        "platform_release": "0.0.0",
        "platform_system": "wasi",
        "platform_version": "0.0.0",
        "python_full_version": version,
        "platform_python_implementation": "CPython",
        "python_version": f"{major}.{minor}",
        "sys_platform": "wasi",
    }


def requirement_lines(text: str) -> list[tuple[int, str]]:
    """The requirements of a ``requirements.txt`` with their line numbers: comments and blank
    lines left out, ``\\`` continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        joined = re.sub(r"(^|\s)#.*$", "", pending + line).strip()
        pending = ""
        if joined:
            lines.append((start, joined))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _pyproject_requirements(text: str) -> list[tuple[int, str]] | None:
    """``[project] dependencies`` of a pyproject.toml that declares a project."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise fail(f"pyproject.toml is not valid TOML: {error}") from None
    project = data.get("project")
    tool = data.get("tool")
    if isinstance(project, dict):
        dynamic = project.get("dynamic", [])
        if isinstance(dynamic, list) and "dependencies" in dynamic:
            raise fail(
                "pyproject.toml's dependencies are dynamic (only its build backend knows them) "
                "and python --runtime=wasm builds nothing: list them in [project] dependencies"
            )
        deps = project.get("dependencies", [])
        if isinstance(deps, list) and deps:
            return [(0, str(d)) for d in deps]
    if isinstance(tool, dict) and isinstance(tool.get("poetry"), dict):
        poetry = tool["poetry"].get("dependencies", {})
        if isinstance(poetry, dict) and set(poetry) - {"python"}:
            raise fail(
                "python --runtime=wasm reads pyproject.toml's [project] dependencies, not "
                "[tool.poetry] ones: list them there or in requirements.txt"
            )
    return None


def job_requirements(
    files: Mapping[str, bytes], parameters: Sequence[str]
) -> tuple[str, list[tuple[int, str]]] | None:
    """Where the job's requirements are and its requirement texts (with line numbers, 0 when
    the source has none), by the launcher's rules; None when it declares none."""
    module = entry_module(files, [ARGV0, *parameters])
    if module is not None:
        commands = docstring_pip_lines(files[module])
        if commands:
            words = [word for c in commands for word in c[2:] if word not in HARMLESS_FLAGS]
            return f"{module}'s docstring", [(0, word) for word in words]
    pyproject = files.get("pyproject.toml")
    if pyproject is not None and declares_project(code_text(pyproject)):
        found = _pyproject_requirements(code_text(pyproject))
        return ("pyproject.toml", found) if found else None
    requirements = files.get("requirements.txt")
    if requirements is None:
        return None
    return "requirements.txt", requirement_lines(code_text(requirements))


def parse_requirements(
    source: str, lines: Sequence[tuple[int, str]], markers: Mapping[str, str]
) -> list[Requirement]:
    """The requirements whose markers hold for the guest (markers then dropped); a
    ``dependencies failed`` error for a line that is not a requirement from an index."""
    found = []
    for number, text in lines:
        where = f"{source} line {number}" if number else source
        if text.startswith("-"):
            raise fail(
                f"{where}: {text.split()[0]} is a pip option; python --runtime=wasm reads "
                "requirements only and installs from the executor's package index"
            )
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            reason = str(error).strip().splitlines()[0]
            raise fail(f"{where}: {text!r} is not a valid requirement ({reason})") from None
        if requirement.url:
            raise fail(
                f"{where}: {requirement.name} names a URL or file; python --runtime=wasm "
                "installs from the executor's package index only"
            )
        if requirement.marker is not None and not requirement.marker.evaluate(dict(markers)):
            continue
        requirement.marker = None
        found.append(requirement)
    return found


def _normalized(requirement: Requirement) -> str:
    """``requirement`` as one spelling: canonical name, sorted extras and specifiers."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{canonicalize_name(requirement.name)}{extras}{requirement.specifier}"


def stub_wheel(folder: Path, name: str, version: str, tag: str) -> None:
    """A wheel of ``name`` ``version`` holding its ``dist-info`` only (build number 0)."""
    project = re.sub(r"[-_.]+", "_", name)
    dist = f"{project}-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": f"Wheel-Version: 1.0\nGenerator: shoal\nRoot-Is-Purelib: true\n"
        f"Tag: {tag}\nBuild: 0\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}\n")
    files[f"{dist}/RECORD"] = "".join(record) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{project}-{version}-0-{tag}.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def remove_built_in(target: Path, built_in: Mapping[str, str]) -> None:
    """Remove from ``target`` every distribution of a built-in package (its RECORD's files)."""
    for dist in target.glob("*.dist-info"):
        if canonicalize_name(dist.name.split("-")[0]) not in built_in:
            continue
        record = dist / "RECORD"
        lines = record.read_text(encoding="utf-8").splitlines() if record.is_file() else []
        for line in lines:
            path = (target / line.split(",")[0]).resolve()
            if path.is_relative_to(target.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(dist, ignore_errors=True)


def pip_failure(output: str, index: str) -> str:
    """Why pip failed, in one line, from its output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    found = next((m for line in lines if (m := _NO_MATCH.search(line))), None)
    if found is not None:
        try:
            name = Requirement(found[1]).name
        except InvalidRequirement:
            name = found[1]
        by = f" (needed by {found[2]})" if found[2] else ""
        if any(sign in line for line in lines for sign in _UNREACHABLE):
            return f"the package index {index} could not be read for {name}{by}"
        return f"{name}{by} has no pure-Python wheel on the package index; {REFUSE_NATIVE}"
    pinned = [line for line in lines if "(constraint)" in line]
    if pinned:
        what = pinned[0].split("(constraint)", 1)[1].strip()
        return f"the requirements need a version other than the built-in {what}"
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR")]
    return f"pip install failed: {(errors or lines or ['no output'])[0][:500]}"


def _own_folder(folder: Path) -> None:
    """Make ``folder`` (0700) when missing; ``PermissionError`` when another user owns it or
    others may write it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    owned = folder.lstat()
    if owned.st_uid != os.getuid() or owned.st_mode & 0o077:
        raise PermissionError(f"{folder} is not this user's own folder (0700)")


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive lock on the file ``path`` (made when missing), which the node's other
    executors take too; waited for without blocking the loop."""
    fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(LOCK_POLL)
        yield
    finally:
        os.close(fd)


def _finish(partial: Path, target: Path, built_in: Mapping[str, str]) -> None:
    """Leave the built-ins out of the installed ``partial`` folder and move it to ``target``."""
    partial.mkdir(mode=0o700, exist_ok=True)
    remove_built_in(partial, built_in)
    partial.replace(target)


@dataclass
class PackageCache:
    """The node's installed requirement sets for the python runtime (one executor's view)."""

    settings: ExecutorSettings
    folder: Path = COMPILED_DIR
    """Where the sets are kept."""
    installs: int = 0
    """pip runs so far (the other jobs with requirements found their set installed)."""
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def site_packages(
        self, runtime: PythonRuntime, files: Mapping[str, bytes], parameters: Sequence[str]
    ) -> Path | None:
        """The installed folder of the job's requirements for ``runtime`` (``files``: its
        code; ``parameters``: the interpreter's arguments), made on first use; None when it
        needs none."""
        declared = job_requirements(files, parameters)
        if declared is None:
            return None
        markers = guest_markers(runtime.version)
        wanted = []
        for requirement in parse_requirements(*declared, markers):
            built_in = runtime.built_in.get(canonicalize_name(requirement.name))
            if built_in is None:
                wanted.append(requirement)
            elif not requirement.specifier.contains(built_in, prereleases=True):
                raise fail(
                    f"{requirement} asks for a version other than the interpreter's built-in "
                    f"{requirement.name} {built_in}, which cannot be replaced"
                )
        if not wanted:
            return None
        text = "".join(sorted({f"{_normalized(r)}\n" for r in wanted}))
        index = self.settings.wasm_package_index
        material = {
            "requirements": text,
            "python": runtime.version,
            "built_in": runtime.built_in,
            "index": index,
        }
        key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        target = self.folder / f"{PREFIX}{key}"
        if target.is_dir():
            return target
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await asyncio.to_thread(_own_folder, self.folder)
            async with _file_lock(self.folder / f"{PREFIX}{key}.lock"):
                if not target.is_dir():
                    await self._install(runtime, text, target)
        return target

    async def _install(self, runtime: PythonRuntime, requirements: str, target: Path) -> None:
        """Run pip for ``requirements`` into ``target`` (through ``<target>.partial``)."""
        partial = target.with_name(target.name + ".partial")
        await asyncio.to_thread(shutil.rmtree, partial, True)
        with tempfile.TemporaryDirectory(prefix="shoal-pip-") as work:
            argv = await asyncio.to_thread(
                self._prepare, runtime, Path(work), requirements, partial
            )
            environ = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
            environ["PIP_CONFIG_FILE"] = os.devnull
            self.installs += 1
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=environ,
                cwd=work,
            )
            try:
                output, _ = await asyncio.wait_for(
                    process.communicate(), self.settings.wasm_install_timeout
                )
            except TimeoutError:
                raise fail(
                    f"pip did not finish within {self.settings.wasm_install_timeout:g}s"
                ) from None
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        log = f"$ {' '.join(argv)}\n{output.decode(errors='replace')}[exit {process.returncode}]\n"
        if process.returncode != 0:
            await asyncio.to_thread(shutil.rmtree, partial, True)
            raise fail(pip_failure(log, self.settings.wasm_package_index), log)
        await asyncio.to_thread(_finish, partial, target, runtime.built_in)

    def _prepare(
        self, runtime: PythonRuntime, work: Path, requirements: str, partial: Path
    ) -> list[str]:
        """Write the requirements, the built-ins' stubs and constraints; pip's argv."""
        (work / "requirements.txt").write_text(requirements, encoding="utf-8")
        stubs = work / "built-in"
        stubs.mkdir()
        major, minor = runtime.version.split(".")[:2]
        pins = []
        for name, version in sorted(runtime.built_in.items()):
            stub_wheel(stubs, name, version, f"py{major}{minor}-none-any")
            pins.append(f"{name}=={version}\n")
        (work / "constraints.txt").write_text("".join(pins), encoding="utf-8")
        proxy = self.settings.upstream_proxy
        return [
            sys.executable, "-m", "pip", "install", "--isolated", "--no-input",
            "--disable-pip-version-check", "--no-compile", "--no-warn-script-location",
            "--progress-bar", "off", "--target", str(partial), "--only-binary=:all:",
            "--platform", "any", "--implementation", "py", "--abi", "none",
            "--python-version", f"{major}.{minor}",
            "--index-url", self.settings.wasm_package_index, "--find-links", str(stubs),
            "--constraint", "constraints.txt", *(["--proxy", proxy] if proxy else []),
            "-r", "requirements.txt",
        ]  # fmt: skip
