"""Broker URLs in error messages: no password, and a hint that fits the failure."""

from __future__ import annotations

import pytest

from shoal.brokerurl import broker_urls, lost, redact, unreachable, unreachable_all
from shoal.errors import UsageError


def test_password_never_shown() -> None:
    assert redact("amqp://user:p@ss@host:5672/v") == "amqp://user:***@host:5672/v"
    assert redact("amqp://host/") == "amqp://host/"
    assert redact("amqp://user@host/") == "amqp://user@host/"


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
    assert error.message.startswith("cannot reach RabbitMQ at amqp://guest:***@h:5672/: ")
    assert hint in error.message
    assert "\n" not in error.message


def test_a_vhost_without_the_topology_says_no_requester_started() -> None:
    error = lost("amqp://u:secret@h/", Exception("NOT_FOUND - no exchange 'shoal.requests'"))
    assert error.exit_code == 3
    assert error.message.startswith("RabbitMQ at amqp://u:***@h/ has no Shoal queues")
    assert error.message.endswith(
        "no requester has started on this broker and vhost (shoal serve requester)"
    )


def test_a_list_of_addresses_splits_at_each_next_scheme() -> None:
    text = "amqp://u:a,b@h1:5672/v, amqps://u:x@h2:5671/v,amqp://u:y@h3/v"
    assert broker_urls(text) == [
        "amqp://u:a,b@h1:5672/v",
        "amqps://u:x@h2:5671/v",
        "amqp://u:y@h3/v",
    ]
    assert broker_urls("amqp://h/") == ["amqp://h/"]
    assert redact(text) == "amqp://u:***@h1:5672/v,amqps://u:***@h2:5671/v,amqp://u:***@h3/v"


@pytest.mark.parametrize(
    "text", ["amqp://u:p@h1/v,amqp://w:p@h2/v", "amqp://u:p@h1/v,amqp://u:p@h2/other"]
)
def test_the_addresses_of_a_list_share_one_user_and_vhost(text: str) -> None:
    with pytest.raises(UsageError, match="different users or vhosts") as raised:
        broker_urls(text)
    assert ":p@" not in raised.value.message


def test_none_of_several_reached_names_each_with_its_reason() -> None:
    error = unreachable_all(
        [
            ("amqp://u:secret@h1:5672/", ConnectionRefusedError(111, "Connection refused")),
            ("amqp://u:secret@h2:5673/", TimeoutError()),
        ]
    )
    assert error.exit_code == 3
    assert "secret" not in error.message
    assert error.message.startswith(
        "cannot reach RabbitMQ at any of its 2 addresses (amqp://u:***@h1:5672/: "
    )
    assert "amqp://u:***@h2:5673/: TimeoutError); is it running?" in error.message
    one = unreachable_all([("amqp://u:secret@h1/", TimeoutError())])
    assert one.message == unreachable("amqp://u:secret@h1/", TimeoutError()).message
