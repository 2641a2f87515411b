"""``shoal schema``: the JSON Schemas of the wire messages (``shoal.schemas``)."""

from __future__ import annotations

from pathlib import Path

import click

from shoal.errors import UsageError


@click.command("schema", short_help="Print the JSON Schema of a wire message.")
@click.argument("name", required=False)
@click.option(
    "--write",
    "folder",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write every schema to DIR/NAME.schema.json instead.",
)
def schema_command(name: str | None, folder: Path | None) -> None:
    """Print the JSON Schema of message NAME; with no NAME, list the names.

    The messages and the queues they travel on are described in docs/protocol.md.
    """
    from shoal.schemas import MESSAGES, schema_text

    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for each in MESSAGES:
            (folder / f"{each}.schema.json").write_text(schema_text(each))
        click.echo(f"wrote {len(MESSAGES)} schemas to {folder}", err=True)
        return
    if name is None:
        for each in MESSAGES:
            click.echo(each)
        return
    if name not in MESSAGES:
        raise UsageError(f"no message called {name!r}; one of: {', '.join(MESSAGES)}")
    click.echo(schema_text(name), nl=False)
