"""From a ``shoal exec`` command line to a validated job: parse → render → apply flags.

The argv rules, fixing those of the original ``bacalhau exec``:

- ``TYPE`` is the first word; the job's ``command`` is ``TYPE`` and its ``arguments`` are the
  other words before ``--`` followed by every word after ``--``, exactly as typed (no shell
  quoting is added or removed).
- Before ``--``, ``--key=value`` is a template variable (``--version=3.12``); any other unknown
  ``--flag`` is an error. After ``--`` nothing is interpreted.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.errors import TemplateError, UsageError
from shoal.model import MAX_RETRIES, RETRY_KINDS, Job, parse_job
from shoal.units import parse_cpu, parse_duration, parse_memory

from . import templates

_VARIABLE = re.compile(r"--([A-Za-z][A-Za-z0-9_-]*)=(.*)", re.DOTALL)
_INPUT_KEYS = {"src": "src", "source": "src", "dst": "dst", "target": "dst", "alias": "alias"}
CODE_ROOT = "/code"
INPUTS_ROOT = "/inputs"


@dataclass(frozen=True)
class ExecOptions:
    """Everything ``shoal exec`` was told, before any file is read."""

    job_type: str
    arguments: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    env: Sequence[str] = ()
    labels: Sequence[str] = ()
    timeout: str | None = None
    queue_timeout: str | None = None
    cpu: str | None = None
    memory: str | None = None
    network: str | None = None
    domains: Sequence[str] = ()
    name: str | None = None
    retries: str | None = None
    retry_on: str | None = None
    retry_backoff: str | None = None
    each: str | None = None
    """One match of ``--each``: carried as an input at ``/inputs/<its name>``."""


def split_argv(
    before: Sequence[str], after: Sequence[str]
) -> tuple[str, list[str], dict[str, str]]:
    """``(job_type, arguments, template_variables)`` from the words around ``--``."""
    if not before:
        raise UsageError("missing job type: shoal exec TYPE [ARGS...] [-- ARGS...]")
    job_type, *rest = before
    if job_type.startswith("-"):
        raise UsageError(f"expected a job type before {job_type!r}: shoal exec TYPE ...")
    positional: list[str] = []
    variables: dict[str, str] = {}
    for word in rest:
        match = _VARIABLE.fullmatch(word)
        if match:
            variables[match.group(1).replace("-", "_")] = match.group(2)
        elif word.startswith("--"):
            raise UsageError(
                f"unknown option {word}: template options take the form --key=value; "
                "put the program's own flags after --"
            )
        else:
            positional.append(word)
    return job_type, [*positional, *after], variables


def _pairs(text: str, flag: str, sep: str = "=") -> tuple[str, str]:
    key, found, value = text.partition(sep)
    if not found or not key:
        example = {"-e": "NAME=value", "-l": "key=value", "-o": "name:/path"}[flag]
        raise UsageError(f"{flag} {text!r}: expected {example}")
    return key, value


def _input_fields(spec: str) -> dict[str, str]:
    if "=" not in spec.split(",", 1)[0]:
        return {"src": spec}
    fields: dict[str, str] = {}
    last = ""
    for part in spec.split(","):
        key, found, value = part.partition("=")
        if found and key.strip().lower() in _INPUT_KEYS:
            last = _INPUT_KEYS[key.strip().lower()]
            fields[last] = value
        elif last:
            fields[last] += "," + part  # a comma inside a URL
        else:
            raise UsageError(f"-i {spec!r}: expected src=URI,dst=PATH")
    if not fields.get("src"):
        raise UsageError(f"-i {spec!r}: missing src=URI")
    return fields


class _Inputs:
    """Builds the inputs list, keeping the inline bytes under one shared budget."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.budget: int | None = None  # MAX_INLINE_BYTES, set by the first local input

    def add_local(self, path: str, target: str | None, alias: str | None, what: str) -> None:
        # tarfile and friends are imported only for jobs that carry files
        from shoal.inline import inline_source
        from shoal.limits import MAX_INLINE_BYTES

        from .archive import pack

        if self.budget is None:
            self.budget = MAX_INLINE_BYTES
        packed = pack(path, budget=self.budget, what=what)
        self.budget -= packed.size
        if target is None:
            target = CODE_ROOT if packed.kind == "dir" else f"{CODE_ROOT}/{Path(path).name}"
        self.items.append(
            {"source": inline_source(packed.kind, packed.data), "alias": alias, "target": target}
        )

    def add_spec(self, spec: str) -> None:
        fields = _input_fields(spec)
        src, dst, alias = fields["src"], fields.get("dst"), fields.get("alias")
        if src.startswith(("http://", "https://")):
            name = posixpath.basename(src.split("?", 1)[0].rstrip("/")) or "input"
            source: dict[str, Any] = {"type": "url", "params": {"url": src}}
        elif src.startswith("file://"):
            name = posixpath.basename(src.removeprefix("file://").rstrip("/")) or "input"
            source = {"type": "local", "params": {"path": src.removeprefix("file://")}}
        elif "://" in src:
            raise UsageError(f"-i {spec!r}: unsupported scheme; use http(s)://, file:// or a path")
        else:
            default = f"{INPUTS_ROOT}/{Path(src).name}"
            self.add_local(src, dst or default, alias, what="-i")
            return
        self.items.append(
            {"source": source, "alias": alias, "target": dst or f"{INPUTS_ROOT}/{name}"}
        )


def each_target(path: str) -> str:
    """Where a file matched by ``--each`` lands in its job: ``/inputs/<its name>``."""
    return f"{INPUTS_ROOT}/{Path(path).name}"


def fan_out(options: ExecOptions, pattern: str) -> list[ExecOptions]:
    """One set of options per path matching ``pattern`` (sorted; ``**`` spans folders):
    the path carried as an input, and ``{}`` in the arguments replaced by where it lands,
    as ``xargs -I{}`` does."""
    import dataclasses
    import glob

    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        raise UsageError(f"--each {pattern!r} matched no file")
    return [
        dataclasses.replace(
            options,
            each=path,
            arguments=[word.replace("{}", each_target(path)) for word in options.arguments],
        )
        for path in matches
    ]


def _flag_value(flag: str, parse: Any, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def _apply_task_flags(task: dict[str, Any], options: ExecOptions) -> None:
    inputs = _Inputs()
    if options.code is not None:
        inputs.add_local(options.code, None, "code", what="--code")
    for spec in options.inputs:
        inputs.add_spec(spec)
    if options.each is not None:
        inputs.add_local(options.each, each_target(options.each), None, what="--each")
    task["inputs"] = [*task.get("inputs", []), *inputs.items]
    if options.outputs:
        outputs = {
            o["name"]: o for o in task.get("outputs", [{"name": "outputs", "path": "/outputs"}])
        }
        for spec in options.outputs:
            name, path = _pairs(spec, "-o", ":")
            outputs[name] = {"name": name, "path": path}
        task["outputs"] = list(outputs.values())
    task["env"] = {**task.get("env", {}), **dict(_pairs(e, "-e") for e in options.env)}
    resources = dict(task.get("resources", {}))
    for key, flag, parse in (("cpu", "--cpu", parse_cpu), ("memory", "--memory", parse_memory)):
        value = _flag_value(flag, parse, getattr(options, key))
        if value is not None:
            resources[key] = value
    task["resources"] = resources
    for key, flag, value in (
        ("execution", "--timeout", options.timeout),
        ("queue", "--queue-timeout", options.queue_timeout),
    ):
        seconds = _flag_value(flag, parse_duration, value)
        if seconds is not None:
            task["timeouts"] = {**task.get("timeouts", {}), key: seconds}
    _apply_retry_flags(task, options)
    if options.network or options.domains:
        network_type = options.network or "http"
        if options.domains and network_type != "http":
            raise UsageError(f"--domain needs --network http, not --network {network_type}")
        task["network"] = {"type": network_type, "domains": list(options.domains)}


def _attempts(value: str) -> int:
    if not value.strip().isdigit() or int(value) > MAX_RETRIES:
        raise ValueError(f"expected a whole number from 0 to {MAX_RETRIES}, got {value!r}")
    return int(value)


def _kinds(value: str) -> list[str]:
    kinds = [kind.strip().lower() for kind in value.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in RETRY_KINDS]
    if unknown or not kinds:
        raise ValueError(f"expected a list of {', '.join(RETRY_KINDS)}, got {value!r}")
    return kinds


def _apply_retry_flags(task: dict[str, Any], options: ExecOptions) -> None:
    """``--retries N``, ``--retry-on KINDS``, ``--retry-backoff DURATION`` into the task."""
    retries = dict(task.get("retries", {}))
    for key, flag, parse, value in (
        ("attempts", "--retries", _attempts, options.retries),
        ("on", "--retry-on", _kinds, options.retry_on),
        ("backoff", "--retry-backoff", parse_duration, options.retry_backoff),
    ):
        parsed = _flag_value(flag, parse, value)
        if parsed is not None:
            retries[key] = parsed
    if retries == task.get("retries", {}):
        return
    if not retries.get("attempts"):
        raise UsageError("--retry-on and --retry-backoff need --retries N (N from 1)")
    backoff = retries.get("backoff")
    if backoff is not None and "backoff_max" not in retries:
        retries["backoff_max"] = max(float(backoff), 300.0)
    task["retries"] = retries


def _check_text(value: Any) -> None:
    """``UsageError`` for a string that is not text (argv bytes that are not UTF-8 become
    lone surrogates in Python, which no JSON message can carry)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(
                f"{value!r} is not UTF-8 text (bytes the terminal could not decode); "
                "give it as UTF-8"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


def prepare_job(options: ExecOptions, template_dirs: Iterable[Path] = ()) -> Job:
    """The job ``shoal exec`` would submit for ``options``; raises ``UsageError`` subclasses."""
    path = templates.lookup(options.job_type, template_dirs)
    job_type = path.stem.lower()
    reserved = sorted(templates.CLI_VARIABLES & set(options.variables))
    if reserved:
        raise TemplateError(
            f"--{reserved[0]}=... is set by shoal exec itself (the job's name, command and "
            "arguments); use --name NAME before the job type, and put arguments after it"
        )
    variables: dict[str, Any] = {
        **options.variables,
        "name": options.name or job_type,
        "command": job_type,
        "arguments": list(options.arguments),
    }
    job = templates.render(path, variables)
    tasks = job.get("tasks")
    if not isinstance(tasks, list) or len(tasks) != 1 or not isinstance(tasks[0], dict):
        raise UsageError(f"template {path.name} must define exactly one task")
    _apply_task_flags(tasks[0], options)
    job["labels"] = {**job.get("labels", {}), **dict(_pairs(x, "-l") for x in options.labels)}
    _check_text(job)
    return parse_job(job)
