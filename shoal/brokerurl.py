"""Broker URLs in messages: the password hidden, and one line that says what to fix.

Kept free of AMQP libraries so the CLI's fast path can use it.
"""

from __future__ import annotations

from shoal.errors import UnavailableError


def redact(url: str) -> str:
    """``url`` with its user and password replaced by ``***``."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def unreachable(url: str, error: BaseException) -> UnavailableError:
    """The error for a broker that cannot be reached or refused us, with a hint."""
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
    return UnavailableError(
        f"cannot reach RabbitMQ at {redact(url)}: {reason}; {hint} "
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
