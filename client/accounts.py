"""Broker accounts and their permissions, made with ``rabbitmqctl`` (``shoal broker …``).

Every step is idempotent: a user that exists gets the password of its secret file again,
and its permissions are set again (a role's topic permission is set, or cleared when the
role has none). Passwords are random (``secrets.token_urlsafe``), written to
``<secrets>/<user>.password`` with mode 0600 before the broker hears of them, and passed to
``rabbitmqctl`` on its standard input, never on a command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shoal.errors import UnavailableError, UsageError
from shoal.names import valid_username
from shoal.roles import PERMISSIONS, Role

SETUP_ACCOUNTS: dict[str, Role] = {
    "shoal-requester": "requester",
    "shoal-executor": "executor",
    "shoal-operator": "operator",
    "demo": "client",
}
"""The accounts ``shoal broker setup`` makes."""

USER_EXISTS = 70
"""``rabbitmqctl add_user``'s exit status for a user that already exists."""


@dataclass(frozen=True)
class Rabbitmqctl:
    """Runs ``rabbitmqctl`` (``command`` may name another, e.g. ``docker exec … rabbitmqctl``)."""

    command: Sequence[str] = field(default_factory=lambda: ("rabbitmqctl",))

    def run(self, *args: str, stdin: str | None = None, ok: Sequence[int] = (0,)) -> int:
        """Run one command; its exit status (one of ``ok``), ``UnavailableError`` otherwise."""
        if shutil.which(self.command[0]) is None:
            raise UnavailableError(f"{self.command[0]} not found: run this on the broker's host")
        done = subprocess.run(
            [*self.command, "-q", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode not in ok:
            detail = (done.stderr or done.stdout).strip().replace("\n", " ")
            raise UnavailableError(f"rabbitmqctl {args[0]} failed: {detail}")
        return done.returncode


def _password(secrets_dir: Path, user: str) -> str:
    """The user's password from its secret file, made (0600) with a new one if missing."""
    path = secrets_dir / f"{user}.password"
    if path.exists():
        return path.read_text().strip()
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    return password


def ensure_user(ctl: Rabbitmqctl, vhost: str, user: str, role: Role, secrets_dir: Path) -> Path:
    """Make ``user`` (or reset its password) with ``role``'s permissions in ``vhost``; the
    path of its password file."""
    if not valid_username(user):
        raise UsageError(f"user name {user!r}: use letters, digits, _ and - (at most 64)")
    password = _password(secrets_dir, user)
    if ctl.run("add_user", user, stdin=password, ok=(0, USER_EXISTS)) == USER_EXISTS:
        ctl.run("change_password", user, stdin=password)
    permissions = PERMISSIONS[role]
    ctl.run(*permissions.set_permissions_args(vhost, user))
    topic = permissions.topic_args(vhost, user)
    if topic is None:
        ctl.run("clear_topic_permissions", "-p", vhost, user)
    else:
        ctl.run(*topic)
    return secrets_dir / f"{user}.password"


def setup(
    ctl: Rabbitmqctl,
    vhost: str,
    secrets_dir: Path,
    accounts: Mapping[str, Role] = SETUP_ACCOUNTS,
) -> dict[str, Path]:
    """The vhost and every account of ``accounts``; user → password file."""
    ctl.run("add_vhost", vhost)
    return {
        user: ensure_user(ctl, vhost, user, role, secrets_dir) for user, role in accounts.items()
    }


def remove_user(ctl: Rabbitmqctl, user: str, secrets_dir: Path) -> bool:
    """Delete ``user`` and its password file; whether the broker had it."""
    existed = ctl.run("delete_user", user, ok=(0, 67)) == 0
    (secrets_dir / f"{user}.password").unlink(missing_ok=True)
    return existed
