"""``shoal broker``: the broker's accounts and permissions (run where ``rabbitmqctl`` works).

``setup`` makes the vhost and one account per role — ``shoal-requester``, ``shoal-executor``,
``shoal-operator`` and a ``demo`` user — with random passwords in ``<secrets>/<user>.password``
(mode 0600); ``add-user`` and ``remove-user`` manage the users who submit jobs. Each is
idempotent. What each role may do is ``shoal.roles``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from shoal.roles import Role
from shoal.settings import data_dir

from .accounts import Rabbitmqctl, ensure_user, remove_user, setup

VHOST = click.option("--vhost", default="/", show_default=True, help="The broker's vhost.")
SECRETS = click.option(
    "--secrets",
    "secrets_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the password files (default: secrets/ in Shoal's data folder).",
)
RABBITMQCTL = click.option(
    "--rabbitmqctl",
    default="rabbitmqctl",
    show_default=True,
    envvar="SHOAL_RABBITMQCTL",
    help="The rabbitmqctl command (e.g. 'docker exec NAME rabbitmqctl').",
)


def _secrets(path: Path | None) -> Path:
    return path if path is not None else data_dir() / "secrets"


@click.group("broker")
def broker_group() -> None:
    """Broker accounts: one per role, and one per user who submits jobs."""


@broker_group.command("setup")
@VHOST
@SECRETS
@RABBITMQCTL
def setup_command(vhost: str, secrets_dir: Path | None, rabbitmqctl: str) -> None:
    """Make the vhost and the requester, executor, operator and demo accounts.

    Then start the requester with SHOAL_EXECUTOR_USERS=shoal-executor and
    SHOAL_OPERATOR_USERS=shoal-operator.
    """
    made = setup(Rabbitmqctl(shlex.split(rabbitmqctl)), vhost, _secrets(secrets_dir))
    for user, path in made.items():
        click.echo(f"{user}: password in {path}")


@broker_group.command("add-user")
@click.argument("name")
@click.option("--operator", is_flag=True, help="May see and follow every user's jobs.")
@VHOST
@SECRETS
@RABBITMQCTL
def add_user_command(
    name: str, operator: bool, vhost: str, secrets_dir: Path | None, rabbitmqctl: str
) -> None:
    """Make (or reset) the account of a user who submits jobs.

    An operator also needs to be listed in the requester's SHOAL_OPERATOR_USERS.
    """
    role: Role = "operator" if operator else "client"
    path = ensure_user(
        Rabbitmqctl(shlex.split(rabbitmqctl)), vhost, name, role, _secrets(secrets_dir)
    )
    click.echo(f"{name}: password in {path}")


@broker_group.command("remove-user")
@click.argument("name")
@SECRETS
@RABBITMQCTL
def remove_user_command(name: str, secrets_dir: Path | None, rabbitmqctl: str) -> None:
    """Delete a user's account (and its password file); its jobs stay in the store."""
    existed = remove_user(Rabbitmqctl(shlex.split(rabbitmqctl)), name, _secrets(secrets_dir))
    click.echo(f"{name}: removed" if existed else f"{name}: no such user")
