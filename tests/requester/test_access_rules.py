"""``shoal.requester.access``: who sees which job, from the settings' user lists."""

from __future__ import annotations

import pytest

from shoal.errors import AccessError, NotFoundError
from shoal.requester.access import Access, namespace_members, user_list

ACCESS = Access(
    requester="req",
    operators=user_list("op, op2"),
    executors=user_list("ex"),
    namespaces=namespace_members("team=alice+bob,solo=carol"),
)


def job(owner: str, namespace: str = "default") -> dict[str, str]:
    return {"id": "j-1", "owner": owner, "namespace": namespace}


def test_owner_operator_and_requester_see_a_job() -> None:
    for user in ("alice", "op", "op2", "req"):
        ACCESS.check_job(user, job("alice"))
    with pytest.raises(NotFoundError, match="no job 'j-1'"):
        ACCESS.check_job("bob", job("alice"))


def test_a_listed_namespace_is_a_closed_group() -> None:
    ACCESS.check_job("bob", job("alice", "team"))
    with pytest.raises(NotFoundError):
        ACCESS.check_job("carol", job("alice", "team"))
    ACCESS.check_namespace("bob", "team")
    ACCESS.check_namespace("carol", "default")
    with pytest.raises(AccessError, match="not a member of namespace 'team'"):
        ACCESS.check_namespace("carol", "team")
    assert ACCESS.scope("bob") == ("bob", frozenset({"team"}))
    assert ACCESS.scope("op") is None


def test_callers_need_a_usable_identity() -> None:
    with pytest.raises(AccessError, match="no user_id"):
        ACCESS.caller(None)
    with pytest.raises(AccessError, match="letters, digits"):
        ACCESS.caller("a.b")
    assert ACCESS.caller("alice") == "alice"


def test_events_count_from_executor_accounts_only() -> None:
    assert ACCESS.is_executor("ex")
    assert ACCESS.is_executor("req")
    assert not ACCESS.is_executor("alice")
    assert not ACCESS.is_executor(None)


def test_bad_namespace_members_are_named() -> None:
    with pytest.raises(ValueError, match="'team' is not NAMESPACE=USER"):
        namespace_members("team")
