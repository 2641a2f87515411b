"""Role accounts for tests: made with ``shoal broker``'s own code in a private vhost, under
names unique to the test session (broker users are global), deleted afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from shoal.client.accounts import Rabbitmqctl, remove_user, setup
from shoal.roles import Role
from tests.services import rabbit_vhost, vhost_of


@dataclass(frozen=True)
class Accounts:
    """The vhost's URL for guest, and an AMQP URL per role name given."""

    guest_url: str
    vhost: str
    urls: Mapping[str, str]
    users: Mapping[str, str]
    """Name given → broker user name."""

    def url(self, name: str) -> str:
        """The URL that logs in as account ``name``."""
        return self.urls[name]


@contextlib.contextmanager
def role_accounts(roles: Mapping[str, Role], secrets_dir: Path) -> Iterator[Accounts]:
    """A private vhost with one account per ``roles`` entry (name → role)."""
    base = os.environ.get("SHOAL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
    host = base.rsplit("@", 1)[-1]
    tag = uuid.uuid4().hex[:6]
    users = {name: f"t{tag}-{name}" for name in roles}
    ctl = Rabbitmqctl()
    with rabbit_vhost() as guest_url:
        vhost = vhost_of(guest_url)
        try:
            made = setup(ctl, vhost, secrets_dir, {users[n]: role for n, role in roles.items()})
            urls = {
                name: f"amqp://{user}:{quote(made[user].read_text().strip(), safe='')}@{host}/"
                f"{quote(vhost, safe='')}"
                for name, user in users.items()
            }
            yield Accounts(guest_url, vhost, urls, users)
        finally:
            for user in users.values():
                remove_user(ctl, user, secrets_dir)
