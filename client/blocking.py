"""One request and its reply over a blocking socket: the fast path of ``shoal exec``.

A plain ``shoal exec`` (no ``--wait``/``--follow``) has one short conversation with RabbitMQ:
connect, publish the submission, read the reply, close. Done with asyncio and aiormq, a
third of its run time would be importing them (~50 ms); here it is AMQP 0-9-1 spoken over a
socket with pamqp (aiormq's own framing library) doing the encoding.

The guarantees are those of every Shoal publish: the message is persistent and
``mandatory``, and the channel is in confirm mode; a submission counts as sent only once the
broker acked it. A returned (unroutable) message means no requester ever declared the queue.
Replies come over direct reply-to, like ``shoal.client.session``; commands that follow a job
(events, API calls) use that module.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pamqp import commands, constants, frame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader, ProtocolHeader
from pamqp.heartbeat import Heartbeat

from shoal.brokerurl import broker_urls, unreachable_all
from shoal.names import API_QUEUE, DIRECT_REPLY_TO, EVENTS_EXCHANGE, REQUESTS_EXCHANGE, SUBMIT_QUEUE

__all__ = ["API_QUEUE", "DIRECT_REPLY_TO", "EVENTS_EXCHANGE", "SUBMIT_QUEUE", "connect"]

PERSISTENT = 2
CHANNEL = 1
_HEADER = struct.Struct(">BHI")


class BrokerClosedError(Exception):
    """The broker closed the connection or the channel; the message says why."""


class ReturnedError(Exception):
    """The broker returned a ``mandatory`` message: no queue for its routing key."""


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, from an ``amqp://`` or ``amqps://`` URL."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """The endpoint of ``url`` (RabbitMQ's URI rules: ``/`` or nothing is vhost ``/``)."""
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"not an AMQP URL: {parts.scheme or url!r}")
        tls = parts.scheme == "amqps"
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (5671 if tls else 5672),
            user=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=unquote(path) if path else "/",
            tls=tls,
        )


class Connection:
    """A blocking AMQP connection with one channel in confirm mode."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._frame_max = constants.FRAME_MAX_SIZE
        self._published = 0
        self.user = ""
        """The account this connection is logged in as (the ``user_id`` it may claim)."""
        self.url = ""
        """The broker address it reached (of a list: the first that answered)."""

    @classmethod
    def open(cls, endpoint: Endpoint, *, timeout: float, name: str) -> Connection:
        """Connect, authenticate (PLAIN), open the vhost and a confirming channel."""
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        if endpoint.tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=endpoint.host)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = cls(sock)
        connection.user = endpoint.user
        try:
            connection._handshake(endpoint, name)
        except BaseException:
            sock.close()
            raise
        return connection

    def _handshake(self, endpoint: Endpoint, name: str) -> None:
        self._sock.sendall(ProtocolHeader().marshal())
        self._expect(commands.Connection.Start)
        self._send(
            commands.Connection.StartOk(
                client_properties={
                    "connection_name": name,
                    "product": "shoal",
                    "capabilities": {
                        "publisher_confirms": True,
                        "authentication_failure_close": True,
                    },
                },
                mechanism="PLAIN",
                response=f"\0{endpoint.user}\0{endpoint.password}",
                locale="en_US",
            ),
            channel=0,
        )
        tune = self._expect(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        if tune.frame_max:
            self._frame_max = min(self._frame_max, tune.frame_max)
        self._send(
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=self._frame_max, heartbeat=0
            ),
            channel=0,
        )
        self._send(commands.Connection.Open(virtual_host=endpoint.vhost), channel=0)
        self._expect(commands.Connection.OpenOk)
        self._send(commands.Channel.Open())
        self._expect(commands.Channel.OpenOk)
        self._send(commands.Confirm.Select())
        self._expect(commands.Confirm.SelectOk)

    def consume_replies(self) -> None:
        """Receive direct replies (``amq.rabbitmq.reply-to``) on the channel, without acks."""
        self._send(commands.Basic.Consume(queue=DIRECT_REPLY_TO, no_ack=True))
        self._expect(commands.Basic.ConsumeOk)

    def publish(self, routing_key: str, body: bytes, properties: commands.Basic.Properties) -> int:
        """Send a persistent, ``mandatory`` message to ``shoal.requests``; its confirm tag."""
        properties.delivery_mode = PERSISTENT
        publish = commands.Basic.Publish(
            exchange=REQUESTS_EXCHANGE, routing_key=routing_key, mandatory=True
        )
        frames = [
            frame.marshal(publish, CHANNEL),
            frame.marshal(ContentHeader(body_size=len(body), properties=properties), CHANNEL),
        ]
        step = self._frame_max - 8
        for start in range(0, len(body), step):
            frames.append(frame.marshal(ContentBody(body[start : start + step]), CHANNEL))
        self._sock.sendall(b"".join(frames))
        self._published += 1
        return self._published

    def call(
        self,
        routing_key: str,
        body: bytes,
        properties: commands.Basic.Properties,
        *,
        timeout: float,
    ) -> bytes | None:
        """Publish with ``reply_to`` set to direct reply-to and wait for the confirm and for
        the reply with the same ``correlation_id``; ``None`` when none came in ``timeout``.

        Raises ``ReturnedError`` when the broker returned the message.
        """
        properties.reply_to = DIRECT_REPLY_TO
        tag = self.publish(routing_key, body, properties)
        deadline = time.monotonic() + timeout
        confirmed = returned = False
        reply: bytes | None = None
        while not (confirmed and reply is not None):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                _, value = self._read()
            except TimeoutError:
                return None
            if isinstance(value, commands.Basic.Return):
                self._content()
                returned = True
            elif isinstance(value, commands.Basic.Ack) and value.delivery_tag >= tag:
                if returned:
                    raise ReturnedError(f"no queue {routing_key!r}")
                confirmed = True
            elif isinstance(value, commands.Basic.Nack):
                raise BrokerClosedError(f"the broker refused the message to {routing_key!r}")
            elif isinstance(value, commands.Basic.Deliver):
                delivered, content = self._content()
                if delivered.correlation_id == properties.correlation_id:
                    reply = content
        return reply

    def close(self) -> None:
        """Close the connection politely (a short wait for ``CloseOk``), then the socket."""
        try:
            bye = commands.Connection.Close(200, "bye", class_id=0, method_id=0)
            self._send(bye, channel=0)
            self._sock.settimeout(1.0)
            while not isinstance(self._read()[1], commands.Connection.CloseOk):
                pass
        except (OSError, BrokerClosedError):
            pass
        finally:
            self._sock.close()

    # frames ---------------------------------------------------------------------------

    def _send(self, value: Frame, *, channel: int = CHANNEL) -> None:
        self._sock.sendall(frame.marshal(value, channel))

    def _recv_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise BrokerClosedError("the broker closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _read(self) -> tuple[int, object]:
        """The next frame that is not a heartbeat; a broker ``Close`` raises."""
        while True:
            head = self._recv_exactly(_HEADER.size)
            _, _, size = _HEADER.unpack(head)
            _, channel, value = frame.unmarshal(head + self._recv_exactly(size + 1))
            if isinstance(value, Heartbeat):
                continue
            if isinstance(value, commands.Connection.Close | commands.Channel.Close):
                raise BrokerClosedError(f"{value.reply_code} {value.reply_text}")
            return channel, value

    def _expect(self, kind: type[Frame]) -> Frame:
        _, value = self._read()
        if not isinstance(value, kind):
            raise BrokerClosedError(f"expected {kind.name}, got {type(value).__name__}")
        return value

    def _content(self) -> tuple[commands.Basic.Properties, bytes]:
        _, head = self._read()
        if not isinstance(head, ContentHeader):
            raise BrokerClosedError(f"expected a content header, got {type(head).__name__}")
        parts: list[bytes] = []
        size = 0
        while size < head.body_size:
            _, part = self._read()
            if not isinstance(part, ContentBody):
                raise BrokerClosedError(f"expected a content body, got {type(part).__name__}")
            parts.append(part.value)
            size += len(part.value)
        return head.properties, b"".join(parts)


def connect(url: str, *, timeout: float, name: str = "shoal-cli") -> Connection:
    """An open connection to the first address of ``url`` that answers, or
    ``UnavailableError`` naming each broker (passwords hidden) and why it failed."""
    failures: list[tuple[str, BaseException]] = []
    for address in broker_urls(url):
        try:
            connection = Connection.open(Endpoint.parse(address), timeout=timeout, name=name)
        except (OSError, ValueError, BrokerClosedError) as error:
            failures.append((address, error))
        else:
            connection.url = address
            return connection
    raise unreachable_all(failures) from None
