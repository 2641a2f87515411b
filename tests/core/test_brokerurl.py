"""Broker URLs in error messages: no password, and a hint that fits the failure."""

from __future__ import annotations

import pytest

from shoal.brokerurl import lost, redact, unreachable


def test_password_never_shown() -> None:
    assert redact("amqp://user:p@ss@host:5672/v") == "amqp://***@host:5672/v"
    assert redact("amqp://host/") == "amqp://host/"


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "is it running?"),
        (Exception("403 ACCESS_REFUSED - Login was refused"), "check the user and password"),
        (Exception("530 NOT_ALLOWED - vhost v not found"), "check the vhost"),
        (Exception("Expected OpenOk, got <Connection.Close>"), "check the user, password and"),
        (TimeoutError(), "TimeoutError; is it running?"),
    ],
)
def test_one_line_with_a_hint(reason: BaseException, hint: str) -> None:
    error = unreachable("amqp://guest:secret@h:5672/", reason)
    assert error.exit_code == 3
    assert "secret" not in error.message
    assert error.message.startswith("cannot reach RabbitMQ at amqp://***@h:5672/: ")
    assert hint in error.message
    assert "\n" not in error.message


def test_a_vhost_without_the_topology_says_no_requester_started() -> None:
    error = lost("amqp://u:secret@h/", Exception("NOT_FOUND - no exchange 'shoal.requests'"))
    assert error.exit_code == 3
    assert error.message.startswith("RabbitMQ at amqp://***@h/ has no Shoal queues")
    assert error.message.endswith(
        "no requester has started on this broker and vhost (shoal serve requester)"
    )
