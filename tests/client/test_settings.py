"""The CLI's own ``SHOAL_*`` reader and AMQP URL parsing (no pydantic-settings, no aio-pika)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.client.blocking import Endpoint
from shoal.client.settings import DEFAULT_BROKER_URL, ClientSettings
from shoal.errors import UsageError


def test_defaults_without_variables() -> None:
    settings = ClientSettings.from_env({"HOME": "/root"})
    assert settings.broker_url.get_secret_value() == DEFAULT_BROKER_URL
    assert settings.template_dirs == []
    assert (settings.rpc_timeout, settings.connect_timeout) == (10.0, 5.0)


def test_prefixed_variables_case_insensitive() -> None:
    settings = ClientSettings.from_env(
        {
            "SHOAL_BROKER_URL": "amqp://u:secret@h:1/v",
            "shoal_rpc_timeout": "2.5",
            "SHOAL_CONNECT_TIMEOUT": "1",
            "SHOAL_TEMPLATE_DIRS": '["/a", "/b"]',
        }
    )
    assert settings.broker_url.get_secret_value() == "amqp://u:secret@h:1/v"
    assert "secret" not in repr(settings)
    assert settings.rpc_timeout == 2.5
    assert settings.connect_timeout == 1.0
    assert settings.template_dirs == [Path("/a"), Path("/b")]


def test_template_dirs_as_a_path_list() -> None:
    assert ClientSettings.from_env({"SHOAL_TEMPLATE_DIRS": "/a:/b"}).template_dirs == [
        Path("/a"),
        Path("/b"),
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHOAL_RPC_TIMEOUT", "0"),
        ("SHOAL_RPC_TIMEOUT", "soon"),
        ("SHOAL_CONNECT_TIMEOUT", "-1"),
        ("SHOAL_TEMPLATE_DIRS", "[1, 2]"),
        ("SHOAL_TEMPLATE_DIRS", "[not json"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(UsageError, match=name):
        ClientSettings.from_env({name: value})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", ("127.0.0.1", 5672, "guest", "guest", "/", False)),
        ("amqp://h", ("h", 5672, "guest", "guest", "/", False)),
        ("amqp://u:p%40ss@h:1/%2F", ("h", 1, "u", "p@ss", "/", False)),
        ("amqp://u:p@h/shoal-test", ("h", 5672, "u", "p", "shoal-test", False)),
        ("amqps://u:p@h/v", ("h", 5671, "u", "p", "v", True)),
    ],
)
def test_amqp_urls(url: str, expected: tuple[object, ...]) -> None:
    endpoint = Endpoint.parse(url)
    got = (endpoint.host, endpoint.port, endpoint.user, endpoint.password, endpoint.vhost)
    assert (*got, endpoint.tls) == expected


def test_not_an_amqp_url() -> None:
    with pytest.raises(ValueError, match="not an AMQP URL"):
        Endpoint.parse("http://h/")
