"""Finding job-type templates, and what each one asks for.

Templates come from, in order (a later source overrides an earlier one of the same name):
the folder of this package, the ``shoal.templates`` entry points (each naming a ``.tpl`` file
or a folder of them), and operator folders (``SHOAL_TEMPLATE_DIRS``). Names are
case-insensitive. The CLI renders them (``shoal.client.templates``); requesters describe them to
the CLI (``shoal.requester.jobtypes``).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from shoal.errors import TemplateError

ENTRY_POINT_GROUP = "shoal.templates"
SUFFIX = ".tpl"
CLI_VARIABLES = frozenset({"name", "command", "arguments"})
"""Variables every template is given by the CLI itself."""


def _templates_in(location: Path) -> dict[str, Path]:
    if location.is_file() and location.suffix == SUFFIX:
        return {location.stem.lower(): location}
    if location.is_dir():
        return {p.stem.lower(): p for p in sorted(location.glob(f"*{SUFFIX}")) if p.is_file()}
    return {}


def discover(operator_dirs: Iterable[Path] = ()) -> dict[str, Path]:
    """Job type → template file, from all sources."""
    found = _templates_in(Path(__file__).parent)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            location = Path(str(entry.load()))
        except Exception as error:
            raise TemplateError(
                f"cannot load template entry point {entry.name!r} ({entry.value}): {error}"
            ) from error
        found.update(_templates_in(location))
    for folder in operator_dirs:
        found.update(_templates_in(folder))
    return found


def options(path: Path) -> dict[str, str | None]:
    """The options a template takes beyond :data:`CLI_VARIABLES` (``--NAME=VALUE`` on
    ``shoal exec``), each with the default its ``| default(...)`` gives, or ``None``."""
    import jinja2
    import jinja2.meta
    from jinja2 import nodes

    try:
        parsed = jinja2.Environment(autoescape=False).parse(path.read_text(encoding="utf-8"))
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"template {path.name} line {error.lineno}: {error.message}") from None
    names = jinja2.meta.find_undeclared_variables(parsed) - CLI_VARIABLES
    defaults: dict[str, str | None] = dict.fromkeys(sorted(names))
    for node in parsed.find_all(nodes.Filter):
        if node.name != "default" or not isinstance(node.node, nodes.Name) or not node.args:
            continue
        value = node.args[0]
        if node.node.name in defaults and isinstance(value, nodes.Const):
            defaults[node.node.name] = str(value.value)
    return defaults


def summary(path: Path) -> str:
    """The first sentence of the template's leading ``{# … #}`` comment, or ``""``."""
    text = path.read_text(encoding="utf-8").lstrip()
    if not text.startswith("{#"):
        return ""
    comment = text[2 : text.find("#}")].strip("-+ \n")
    first = " ".join(comment.split("\n\n", 1)[0].split())
    return first.split(". ", 1)[0].rstrip(".")
