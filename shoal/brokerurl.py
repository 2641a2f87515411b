"""Broker URLs: one address or several, in messages with the password hidden, and one line that
says what to fix.

A broker setting (``SHOAL_BROKER_URL``, ``--broker``, a profile's ``broker_url``) holds one AMQP
URL or several separated by commas, the nodes of one RabbitMQ cluster: clients and services
connect to the first that answers and, after a drop, to the next (round robin). The URLs of a
list log in as one user to one vhost (messages carry the user as ``user_id``, which the broker
checks against the connection's own). Kept free of AMQP libraries so the CLI's fast path can use
it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from shoal.errors import UnavailableError, UsageError

_SEPARATOR = re.compile(r"\s*,\s*(?=amqps?://)")
"""A comma before the next URL's scheme: a comma inside a password splits nothing."""

MASK = "***"
"""What a password is shown as."""


def broker_urls(text: str) -> list[str]:
    """The addresses of a broker setting, in order; ``UsageError`` when they do not share one
    user and vhost."""
    urls = [url for url in _SEPARATOR.split(text.strip()) if url]
    if len(urls) > 1:
        logins = {_login(url) for url in urls}
        if len(logins) > 1:
            raise UsageError(
                f"the broker URLs {redact(text)} name different users or vhosts; list the "
                "nodes of one cluster with one user and vhost"
            )
    return urls or [text]


def _login(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return unquote(parts.username or "guest"), unquote(parts.path[1:] or "/")


def redact(text: str) -> str:
    """``text`` with the password of its URL replaced by ``***``, the user kept: one URL of any
    scheme, or each URL of a broker list (``amqp://u:***@h1/,amqp://u:***@h2/``). Text that is
    not a URL with a password is returned as it is."""
    return ",".join(_redact_one(one) for one in _SEPARATOR.split(text))


def _redact_one(url: str) -> str:
    scheme, found, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    user, _, password = userinfo.partition(":")
    if not found or not password:
        return url
    return f"{scheme}://{user}:{MASK}@{host}"


def _explain(error: BaseException) -> tuple[str, str]:
    """Why a connection failed, and what to check."""
    reason = str(error) or type(error).__name__
    if "ACCESS_REFUSED" in reason or "403" in reason:
        hint = "check the user and password in the URL"
    elif "NOT_ALLOWED" in reason or "vhost" in reason:
        hint = "check the vhost in the URL"
    elif "Connection.Close" in reason:
        reason = "the broker refused the connection"
        hint = "check the user, password and vhost in the URL"
    else:
        hint = "is it running?"
    return reason, hint


def unreachable(url: str, error: BaseException) -> UnavailableError:
    """The error for a broker that cannot be reached or refused us, with a hint."""
    reason, hint = _explain(error)
    return UnavailableError(
        f"cannot reach RabbitMQ at {redact(url)}: {reason}; {hint} "
        "(set SHOAL_BROKER_URL or --broker)"
    )


def unreachable_all(failures: Sequence[tuple[str, BaseException]]) -> UnavailableError:
    """The error for a list of broker addresses none of which could be reached: each address
    with its reason, and the hint of the last."""
    if len(failures) == 1:
        return unreachable(*failures[0])
    each = "; ".join(f"{redact(url)}: {_explain(error)[0]}" for url, error in failures)
    hint = _explain(failures[-1][1])[1]
    return UnavailableError(
        f"cannot reach RabbitMQ at any of its {len(failures)} addresses ({each}); {hint} "
        "(set SHOAL_BROKER_URL or --broker)"
    )


def lost(url: str, error: BaseException | None) -> UnavailableError:
    """The error for a broker connection that broke mid-command (a restart, a network cut), or
    for a broker that closed it because Shoal's exchanges and queues are not there."""
    if error is None:
        reason = "the connection closed"
    elif isinstance(error, OSError) and error.strerror:
        reason = error.strerror  # aiormq's closes: errno is the AMQP reply code
    else:
        reason = str(error) or type(error).__name__
    if "NOT_FOUND - no exchange" in reason or "NOT_FOUND - no queue" in reason:
        return UnavailableError(
            f"RabbitMQ at {redact(url)} has no Shoal queues ({reason}): no requester has "
            "started on this broker and vhost (shoal serve requester)"
        )
    return UnavailableError(
        f"lost the connection to RabbitMQ at {redact(url)}: {reason}; try again once it is back"
    )
