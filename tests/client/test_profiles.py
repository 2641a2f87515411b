"""Which broker URL a command uses: flags, variables, the config file's profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.client.profiles import BrokerChoice, choose_broker, config_path
from shoal.errors import UsageError

CONFIG = """
default_profile = "home"

[profiles.home]
broker_url = "amqp://u:p@home:5672/"

[profiles.work]
broker_url = "amqps://u:p@work/"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose config file is ``tmp_path/shoal/config.toml``."""
    (tmp_path / "shoal").mkdir()
    (tmp_path / "shoal" / "config.toml").write_text(CONFIG)
    return {"XDG_CONFIG_HOME": str(tmp_path)}


@pytest.mark.parametrize(
    ("flag_url", "flag_profile", "variables", "url"),
    [
        ("amqp://flag/", "work", {"SHOAL_BROKER_URL": "amqp://env/"}, "amqp://flag/"),
        (None, "work", {"SHOAL_BROKER_URL": "amqp://env/"}, "amqps://u:p@work/"),
        (None, None, {"SHOAL_BROKER_URL": "amqp://env/", "SHOAL_PROFILE": "work"}, "amqp://env/"),
        (None, None, {"shoal_profile": "work"}, "amqps://u:p@work/"),
        (None, None, {}, "amqp://u:p@home:5672/"),  # default_profile
    ],
)
def test_precedence(
    env: dict[str, str],
    flag_url: str | None,
    flag_profile: str | None,
    variables: dict[str, str],
    url: str,
) -> None:
    assert choose_broker(flag_url, flag_profile, {**env, **variables}).url == url


def test_no_file_and_no_profile_is_the_default(tmp_path: Path) -> None:
    assert choose_broker(None, None, {"HOME": str(tmp_path)}) == BrokerChoice(None, "the default")


def test_config_file_locations(tmp_path: Path) -> None:
    assert config_path({"HOME": "/h"}) == Path("/h/.config/shoal/config.toml")
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/shoal/config.toml")
    assert config_path({"SHOAL_CONFIG": "/c.toml", "XDG_CONFIG_HOME": "/x"}) == Path("/c.toml")


@pytest.mark.parametrize(
    ("text", "profile", "message"),
    [
        (CONFIG, "play", "no profile 'play' in .*; profiles: home, work"),
        ("default_profile = [", None, "is not valid TOML"),
        ("[profiles.a]\nbroker = 'amqp://x/'", "a", "profiles.a: unknown key 'broker'"),
        ("colour = 'red'", None, "unknown key 'colour'; known keys: default_profile, profiles"),
        ("[profiles.a]", "a", "profiles.a has no broker_url"),
        ("[profiles.a]\nbroker_url = 'localhost:5672'", "a", "profile 'a' in .*not an AMQP URL"),
        ("profiles = 3", None, "'profiles' must be a table"),
    ],
)
def test_mistakes_in_the_file_name_it(
    tmp_path: Path, text: str, profile: str | None, message: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as raised:
        choose_broker(None, profile, {"SHOAL_CONFIG": str(path)})
    assert str(path) in raised.value.message


def test_a_profile_without_a_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no config file at .*SHOAL_CONFIG"):
        choose_broker(None, "work", {"XDG_CONFIG_HOME": str(tmp_path)})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:5672", "--broker: 'localhost:5672' is not an AMQP URL"),
        ("http://u:secret@h/", "--broker: '…@h/' is not an AMQP URL"),
        ("amqp://h:99999/", "--broker: bad broker URL"),
        ("amqp:///", "--broker: the broker URL names no host"),
        ("amqp://u:secret@h1/,amqp://u:secret@h2:0/", "--broker: bad broker URL"),
        ("amqp://u:secret@h1/,amqp://w:secret@h2/", "--broker: the broker URLs .* name different"),
    ],
)
def test_bad_broker_urls(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        choose_broker(url, None, {})
    assert "secret" not in raised.value.message


def test_a_list_of_cluster_nodes_is_a_broker_url() -> None:
    listed = "amqp://u:p@h1:5672/v,amqp://u:p@h2:5673/v"
    assert choose_broker(listed, None, {}).url == listed
    assert choose_broker(None, None, {"SHOAL_BROKER_URL": listed}).url == listed
