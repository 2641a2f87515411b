"""Named broker URLs in a config file, and which URL a command uses.

The file is ``$SHOAL_CONFIG`` if set, else ``$XDG_CONFIG_HOME/shoal/config.toml`` (by default
``~/.config/shoal/config.toml``)::

    default_profile = "prod"

    [profiles.prod]
    broker_url = "amqps://alice:secret@rabbit.example.com/"

    [profiles.local]
    broker_url = "amqp://guest:guest@127.0.0.1:5672/"

The first of these that is set wins: ``--broker``, ``--profile NAME``, ``SHOAL_BROKER_URL``,
``SHOAL_PROFILE``, the file's ``default_profile``, the built-in default. The file is read
only when a profile may be needed, so ``--broker`` or ``SHOAL_BROKER_URL`` alone costs nothing.
A broker URL may be a comma-separated list of the nodes of one cluster (``shoal.brokerurl``).
A broken file, an unknown key or a profile that is not there is a ``UsageError`` naming the
file; so is a broker URL that is not ``amqp://`` or ``amqps://``, naming where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.errors import UsageError

PROFILE_KEYS = frozenset({"broker_url"})
TOP_KEYS = frozenset({"default_profile", "profiles"})


@dataclass(frozen=True)
class BrokerChoice:
    """A broker URL and where it came from (for messages: ``--broker``, ``profile 'x'``…)."""

    url: str | None
    source: str


def config_path(environ: Mapping[str, str]) -> Path:
    """Where the config file is looked for."""
    if environ.get("SHOAL_CONFIG"):
        return Path(environ["SHOAL_CONFIG"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "shoal" / "config.toml"


def choose_broker(
    flag_url: str | None, flag_profile: str | None, environ: Mapping[str, str]
) -> BrokerChoice:
    """The broker URL to use, by the precedence above; ``url`` is ``None`` for the default."""
    if flag_url:
        return checked(BrokerChoice(flag_url, "--broker"))
    env_url = _env(environ, "SHOAL_BROKER_URL")
    env_profile = _env(environ, "SHOAL_PROFILE")
    if flag_profile is None and env_url:
        return checked(BrokerChoice(env_url, "SHOAL_BROKER_URL"))
    name = flag_profile or env_profile
    path = config_path(environ)
    if name is None and not path.is_file():
        return BrokerChoice(None, "the default")
    config = read_config(path)
    if name is None:
        name = config.get("default_profile")
        if name is None:
            return BrokerChoice(None, "the default")
    return checked(_profile(config, name, path))


def _env(environ: Mapping[str, str], name: str) -> str | None:
    for key, value in environ.items():
        if key.upper() == name and value:
            return value
    return None


def read_config(path: Path) -> dict[str, Any]:
    """The parsed config file, its keys checked."""
    import tomllib

    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no config file at {path} (see SHOAL_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read config file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from None
    _known(config, TOP_KEYS, str(path))
    profiles = config.get("profiles", {})
    if not isinstance(profiles, dict):
        raise UsageError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    for name, profile in profiles.items():
        if not isinstance(profile, dict):
            raise UsageError(f"{path}: profiles.{name} must be a table")
        _known(profile, PROFILE_KEYS, f"{path}: profiles.{name}")
        if not isinstance(profile.get("broker_url", ""), str):
            raise UsageError(f"{path}: profiles.{name}.broker_url must be a string")
    if not isinstance(config.get("default_profile", ""), str):
        raise UsageError(f"{path}: default_profile must be a string")
    return config


def _known(table: dict[str, Any], keys: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise UsageError(
            f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(keys))}"
        )


def _profile(config: dict[str, Any], name: str, path: Path) -> BrokerChoice:
    profiles: dict[str, dict[str, str]] = config.get("profiles", {})
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(f"no profile {name!r} in {path}; profiles: {known}")
    url = profiles[name].get("broker_url")
    if not url:
        raise UsageError(f"{path}: profiles.{name} has no broker_url")
    return BrokerChoice(url, f"profile {name!r} in {path}")


def checked(choice: BrokerChoice) -> BrokerChoice:
    """``choice`` if its URL (or each URL of its comma-separated list) is an AMQP URL a
    connection can be made from, the URLs of a list sharing one user and vhost."""
    from shoal.brokerurl import broker_urls

    try:
        urls = broker_urls(choice.url or "")
    except UsageError as error:
        raise UsageError(f"{choice.source}: {error}") from None
    for url in urls:
        _check_url(url, choice.source)
    return choice


def _check_url(url: str, source: str) -> None:
    example = "expected amqp://USER:PASSWORD@HOST:PORT/VHOST"
    try:
        parts = urlsplit(url)
        if parts.port == 0:
            raise ValueError("port 0")
    except ValueError as error:
        raise UsageError(f"{source}: bad broker URL ({error}); {example}") from None
    if parts.scheme not in ("amqp", "amqps"):
        shown = url if "@" not in url else "…@" + url.rsplit("@", 1)[1]
        raise UsageError(f"{source}: {shown!r} is not an AMQP URL; {example}")
    if not parts.hostname:
        raise UsageError(f"{source}: the broker URL names no host; {example}")
