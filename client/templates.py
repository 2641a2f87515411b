"""Rendering job-type templates (Jinja2 templates of a JSON job) found by
``shoal.templates.discovery``: the ``templates/`` folder shipped with Shoal, the
``shoal.templates`` entry points, and the operator folders in ``SHOAL_TEMPLATE_DIRS``.

Every ``{{ expression }}`` renders as a JSON value, so user input can never break the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shoal.errors import TemplateError, UnknownJobTypeError
from shoal.templates.discovery import CLI_VARIABLES, discover

__all__ = ["CLI_VARIABLES", "discover", "lookup", "render"]


def _finalize(value: Any) -> str:
    import jinja2

    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    return json.dumps(value)


def render(path: Path, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Render the template at ``path`` with ``variables`` into a job dict.

    Raises ``TemplateError`` naming the job type for an unknown variable, a variable the
    template needs but was not given, or a template that does not produce a JSON object.
    """
    import jinja2
    import jinja2.meta

    job_type = path.stem.lower()
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
    )
    source = path.read_text(encoding="utf-8")
    try:
        parsed = env.parse(source)  # parsed once: for its variables and to compile
        declared = jinja2.meta.find_undeclared_variables(parsed)
        template = env.from_string(parsed)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"template {path.name} line {error.lineno}: {error.message}") from None
    unknown = sorted(set(variables) - declared - CLI_VARIABLES)
    if unknown:
        accepted = sorted(declared - CLI_VARIABLES)
        hint = ", ".join(f"--{v}=VALUE" for v in accepted) or "none"
        raise TemplateError(
            f"job type {job_type} has no option --{unknown[0]}; its template options: {hint}"
        )
    try:
        text = template.render(**variables)
    except jinja2.UndefinedError as error:
        raise TemplateError(f"job type {job_type} needs a value: {error.message}") from None
    try:
        job = json.loads(text)
    except json.JSONDecodeError as error:
        raise TemplateError(f"template {path.name} did not render valid JSON: {error}") from None
    if not isinstance(job, dict):
        raise TemplateError(f"template {path.name} must render a JSON object")
    return job


def lookup(job_type: str, operator_dirs: Iterable[Path] = ()) -> Path:
    """The template for ``job_type`` (case-insensitive) or ``UnknownJobTypeError``."""
    found = discover(operator_dirs)
    try:
        return found[job_type.lower()]
    except KeyError:
        raise UnknownJobTypeError(job_type, found) from None
