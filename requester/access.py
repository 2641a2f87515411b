"""Who may see and do what with which job, by broker-checked identity.

The caller of a submission or an API request is the message's AMQP ``user_id``, which
RabbitMQ refuses to deliver unless it names the publishing connection's account; a request
without one is refused (clients set it). A job belongs to the user who submitted it:

- its owner sees it (``describe``, ``logs``, ``get``, ``stop``, ``list``);
- an operator (``SHOAL_OPERATOR_USERS``, and the requester's own account) sees every job;
- a namespace listed in ``SHOAL_NAMESPACE_MEMBERS`` (``team=alice+bob,other=carol``) is a
  closed group: only its members may submit into it, and they see each other's jobs there.
  An unlisted namespace is open to submit into, and each user sees only their own jobs in it.

A job the caller may not see is reported as not found, so its existence does not leak.
Events are recorded only from executor accounts (``SHOAL_EXECUTOR_USERS`` and the
requester's own account), which keeps a single-account set-up (``guest`` everywhere) working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shoal.errors import AccessError, NotFoundError
from shoal.names import valid_username


def user_list(value: str) -> frozenset[str]:
    """``"a, b,c"`` → ``{"a", "b", "c"}``."""
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def namespace_members(value: str) -> dict[str, frozenset[str]]:
    """``"team=alice+bob,other=carol"`` → ``{"team": {"alice", "bob"}, "other": {"carol"}}``."""
    groups: dict[str, frozenset[str]] = {}
    for entry in user_list(value):
        name, sep, members = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"namespace members entry {entry!r} is not NAMESPACE=USER+USER")
        groups[name.strip()] = frozenset(m.strip() for m in members.split("+") if m.strip())
    return groups


@dataclass(frozen=True)
class Access:
    """The requester's access rules; see the module docstring."""

    requester: str
    operators: frozenset[str] = frozenset()
    executors: frozenset[str] = frozenset()
    namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def caller(self, user_id: str | None) -> str:
        """The caller named by a message's ``user_id``; ``AccessError`` without a usable one."""
        if not user_id:
            raise AccessError(
                "the request carries no user_id: the client must set it to its RabbitMQ user"
            )
        if not valid_username(user_id):
            raise AccessError(
                f"user {user_id!r} cannot use Shoal: user names are letters, digits, _ and -"
            )
        return user_id

    def is_operator(self, user: str) -> bool:
        """Whether ``user`` sees every job."""
        return user == self.requester or user in self.operators

    def is_executor(self, user: str | None) -> bool:
        """Whether events published by ``user`` may be recorded."""
        return bool(user) and (user == self.requester or user in self.executors)

    def check_namespace(self, user: str, namespace: str) -> None:
        """``AccessError`` unless ``user`` may submit into ``namespace``."""
        members = self.namespaces.get(namespace)
        if members is not None and user not in members and not self.is_operator(user):
            raise AccessError(f"user {user!r} is not a member of namespace {namespace!r}")

    def may_see(self, user: str, owner: str, namespace: str) -> bool:
        """Whether ``user`` may see (and stop) a job of ``owner`` in ``namespace``."""
        if user == owner or self.is_operator(user):
            return True
        return user in self.namespaces.get(namespace, frozenset())

    def check_job(self, user: str, job: Mapping[str, object]) -> None:
        """``NotFoundError`` (as for a missing job) unless ``user`` may see ``job``."""
        if not self.may_see(user, str(job.get("owner", "")), str(job.get("namespace", ""))):
            raise NotFoundError(f"no job {job.get('id')!r}")

    def scope(self, user: str) -> tuple[str, frozenset[str]] | None:
        """What ``list`` shows ``user``: ``None`` for every job, else (owner, namespaces whose
        jobs the user also sees)."""
        if self.is_operator(user):
            return None
        return user, frozenset(ns for ns, members in self.namespaces.items() if user in members)
