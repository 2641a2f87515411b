"""One job store per broker: a requester refuses to start beside requesters of another store.

Requesters of one vhost share its queues: each takes a share of the submissions, API calls
and events. With two stores (two SQLite files, or two databases) each would hold only the
jobs it happened to take, and ``job describe`` would find a job or not depending on which
requester answered. Several requesters are safe only on one store (Postgres, or one SQLite
file on one host), so every store carries an ID (``JobStore.store_id``) and requesters hold
a roll call on the fanout exchange ``shoal.requesters``:

- a starting requester publishes a question, mandatory, with a private reply queue. When
  the broker returns it unroutable, no requester is running and it starts at once;
  otherwise it waits :data:`ANSWER_WINDOW` seconds for answers and refuses to start
  (``UsageError``) if any names another store;
- a running requester binds a private queue to the exchange and answers each question with
  its name, store ID and database.

Two requesters of different stores that start within the same instant can both miss each
other; the check is for the mistake of starting a second stack against a broker, not a lock.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass

import structlog
from aio_pika import ExchangeType, Message
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError

from shoal.errors import UsageError

log = structlog.get_logger(__name__)

ROLL_CALL_EXCHANGE = "shoal.requesters"
ANSWER_WINDOW = 1.0
"""Seconds a starting requester waits for running ones to answer."""


@dataclass(frozen=True)
class Peer:
    """A requester as it answers the roll call."""

    name: str
    store: str
    database: str


def _decode(body: bytes) -> Peer | None:
    try:
        data = json.loads(body)
        return Peer(str(data["name"]), str(data["store"]), str(data["database"]))
    except (ValueError, KeyError, TypeError):
        return None


class RollCall:
    """:meth:`check` before consuming, then :meth:`answer` until :meth:`close`."""

    def __init__(self, connection: AbstractRobustConnection, me: Peer) -> None:
        self._connection = connection
        self._me = me
        self._answering: AbstractChannel | None = None

    async def check(self, window: float = ANSWER_WINDOW) -> list[Peer]:
        """The requesters running on this broker; ``UsageError`` if one has another store."""
        channel = await self._connection.channel(on_return_raises=True)
        try:
            exchange = await channel.declare_exchange(
                ROLL_CALL_EXCHANGE, ExchangeType.FANOUT, durable=True
            )
            inbox = await channel.declare_queue(exclusive=True, auto_delete=True)
            peers: list[Peer] = []

            async def on_answer(message: AbstractIncomingMessage) -> None:
                peer = _decode(message.body)
                if peer is not None:
                    peers.append(peer)

            await inbox.consume(on_answer, no_ack=True)
            question = Message(json.dumps(asdict(self._me)).encode(), reply_to=inbox.name)
            try:
                await exchange.publish(question, routing_key="", mandatory=True)
            except DeliveryError:  # returned unroutable: no requester is running
                return []
            await asyncio.sleep(window)
        finally:
            await channel.close()
        others = [peer for peer in peers if peer.store != self._me.store]
        if others:
            other = others[0]
            raise UsageError(
                f"requester {other.name!r} already serves this broker and vhost with another job "
                f"store ({other.database}, store {other.store}; this one: {self._me.database}, "
                f"store {self._me.store}): requesters of one vhost must share one store — "
                "give every requester the same Postgres SHOAL_DATABASE_URL, or use another vhost"
            )
        return peers

    async def answer(self) -> None:
        """Answer every later roll call with this requester's name and store."""
        channel = await self._connection.channel(publisher_confirms=False)
        exchange = await channel.declare_exchange(
            ROLL_CALL_EXCHANGE, ExchangeType.FANOUT, durable=True
        )
        questions = await channel.declare_queue(exclusive=True, auto_delete=True)
        await questions.bind(exchange)
        reply = json.dumps(asdict(self._me)).encode()

        async def on_question(message: AbstractIncomingMessage) -> None:
            asker = _decode(message.body)
            if message.reply_to:
                await channel.default_exchange.publish(Message(reply), routing_key=message.reply_to)
            if asker is not None and asker.store != self._me.store:
                log.warning("requester.other_store_refused", requester=asker.name)

        await questions.consume(on_question, no_ack=True)
        self._answering = channel

    async def close(self) -> None:
        """Stop answering."""
        if self._answering is not None and not self._answering.is_closed:
            await self._answering.close()
