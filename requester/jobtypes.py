"""What a requester runs: its job types, as ``shoal job-types`` and ``shoal exec --help`` show.

A job type is offered when this requester has both its template (``shoal.templates.discovery``:
built-in, entry points, ``SHOAL_TEMPLATE_DIRS``) and a translator for it. Each entry gives the
template's options with their defaults, the values the translator accepts where it says
(``choices``), the engine its jobs run on, and the template's one-line description. A
template without a translator is listed apart: the CLI can render it, but a submission of it
is refused (``UnknownJobTypeError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shoal.templates.discovery import discover, options, summary

from .translate.registry import TranslatorRegistry


def catalogue(registry: TranslatorRegistry, template_dirs: Iterable[Path] = ()) -> dict[str, Any]:
    """``{"job_types": [...], "untranslated": [names]}`` for ``registry`` and the templates."""
    templates = discover(template_dirs)
    translated = set(registry.job_types())
    offered = []
    for name in sorted(set(templates) & translated):
        translator = registry.get(name)
        choices = dict(getattr(translator, "choices", {}) or {})
        offered.append(
            {
                "name": name,
                "engine": str(getattr(translator, "engine", "docker")),
                "description": summary(templates[name]),
                "options": [
                    {
                        "name": option,
                        "default": default,
                        "choices": [str(c) for c in choices.get(option, ())],
                    }
                    for option, default in options(templates[name]).items()
                ],
            }
        )
    return {"job_types": offered, "untranslated": sorted(set(templates) - translated)}
