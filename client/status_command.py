"""``shoal status``: the services that are alive and the depth of each queue.

Asked of a requester (API op ``status``, ``shoal.requester.fleet``): services publish heartbeats
every ``SHOAL_HEARTBEAT_EVERY`` seconds (10 by default) and drop out of the view after
missing three. Running job IDs are shown to operators (JSON output); other users see how
many.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import click

from .output import FORMATS, echo_data
from .settings import load_client_settings


def node_rows(nodes: list[dict[str, Any]], now: datetime, relative: bool) -> list[tuple[str, ...]]:
    """One row per service: ID, role, version, engines, slots in use/total, jobs taken
    (IDs, for an operator, in the JSON output only), last seen."""
    from .listing import format_time, parse_time

    rows: list[tuple[str, ...]] = []
    for node in nodes:
        running = node["running"]
        count = running if isinstance(running, int) else len(running)
        executor = node["role"] == "executor"
        slots = f"{min(count, node['slots'])}/{node['slots']}" if executor else "-"
        role = f"{node['role']} (draining)" if node["draining"] else node["role"]
        rows.append(
            (
                node["node_id"],
                role,
                node["version"] or "-",
                ",".join(node["engines"]) or "-",
                slots,
                str(count),
                format_time(parse_time(node["last_seen"]), now, relative),
            )
        )
    return rows


def queue_rows(queues: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per queue: name, ready, unacknowledged (``-`` when unknown), consumers."""
    return [
        (
            queue["name"],
            str(queue["ready"]),
            "-" if queue["unacknowledged"] is None else str(queue["unacknowledged"]),
            str(queue["consumers"]),
        )
        for queue in queues
    ]


@click.command("status", short_help="The live requesters and executors, and queue depths.")
@click.option("--output-format", type=click.Choice(("table", *FORMATS)), default="table")
@click.pass_context
def status_command(ctx: click.Context, output_format: str) -> None:
    """Show the requesters and executors that sent a heartbeat lately (node ID, role,
    version, engines, slots in use/total, running jobs, last seen) and each Shoal queue's
    messages ready, unacknowledged and consumers. A service drops out of the list after
    missing three heartbeats (SHOAL_HEARTBEAT_EVERY, 10 s by default, on the service).
    Unacknowledged counts are known for the compute queues (the deliveries of each that
    the executors hold, from their heartbeats); RabbitMQ's management API has the others.

    \b
    Example:
      shoal status
      shoal status --output-format json
    """
    import sys

    from .listing import table

    settings = load_client_settings(ctx)

    async def ask() -> dict[str, Any]:
        from .session import open_session

        async with open_session(settings) as session:
            answer: dict[str, Any] = await session.api("status")
            return answer

    found = asyncio.run(ask())
    if output_format != "table":
        echo_data(found, output_format)
        return
    now = datetime.now(UTC)
    nodes = node_rows(found["nodes"], now, sys.stdout.isatty())
    table(("NODE ID", "ROLE", "VERSION", "ENGINES", "SLOTS", "RUNNING", "LAST SEEN"), nodes)
    click.echo()
    table(("QUEUE", "READY", "UNACKED", "CONSUMERS"), queue_rows(found["queues"]))
