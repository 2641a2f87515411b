"""``shoal job rerun ID``: the same job again, as a new job that names the one it reruns.

The new job is the first one's spec as submitted (a translated job's original, so it is
translated afresh), with a new ID, no owner or state of its own, the ``shoal.*`` metadata the
requester added left out, and the label ``rerun_of=ID`` (find reruns with ``job list -l``).
It is submitted and reported as ``shoal exec`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import click

from shoal.errors import ProtocolError

RERUN_LABEL = "rerun_of"
SPEC_ONLY = ("id", "owner", "state", "created_at")
"""Fields of a stored job that belong to that job, not to its spec."""


def rerun_job(record: Mapping[str, Any]) -> Any:
    """The new :class:`shoal.model.Job` that reruns the job described by ``record``."""
    from shoal.model import new_job_id, parse_job

    spec = record.get("original") or record.get("spec")
    if not isinstance(spec, dict):
        raise ProtocolError(f"the requester's record of {record.get('id')} holds no job spec")
    data = {key: value for key, value in spec.items() if key not in SPEC_ONLY}
    data["id"] = new_job_id()
    data["meta"] = {k: v for k, v in (spec.get("meta") or {}).items() if not k.startswith("shoal.")}
    data["labels"] = {**(spec.get("labels") or {}), RERUN_LABEL: str(record["id"])}
    return parse_job(data)


@click.command("rerun")
@click.argument("job_id")
@click.option("--wait/--no-wait", default=False, help="Wait for the new job to finish.")
@click.option("-f", "--follow", is_flag=True, help="Stream its logs until it finishes.")
@click.option(
    "--wait-timeout",
    metavar="DURATION",
    help="With --wait/-f: give up waiting after this (exit 124; the job is left as it is).",
)
@click.option("--id-only", is_flag=True, help="Print only the new job's ID.")
@click.pass_context
def rerun(
    ctx: click.Context,
    job_id: str,
    wait: bool,
    follow: bool,
    wait_timeout: str | None,
    id_only: bool,
) -> None:
    """Submit JOB_ID's spec again as a new job, labelled rerun_of=JOB_ID (exit codes as exec)."""
    from .api import AsyncClient
    from .settings import load_client_settings
    from .submit import submit_and_report, waiting_deadline

    settings = load_client_settings(ctx)
    waiting_deadline(wait=wait, follow=follow, wait_timeout=wait_timeout)  # before connecting

    async def describe() -> dict[str, Any]:
        async with AsyncClient(settings=settings) as client:
            return await client.describe(job_id)

    job = rerun_job(asyncio.run(describe()))
    submit_and_report(
        settings, job, wait=wait, follow=follow, id_only=id_only, wait_timeout=wait_timeout
    )
