"""A minimal MQTT 3.1.1 broker for loopback use: what `edge-agent demo` starts when no
mosquitto is installed, so the demo needs nothing installed by hand.

It is no replacement for mosquitto: no authentication, no TLS, no persistence, every
session clean (a client asking for a persistent one gets `session present` 0 and nothing
is queued for it while it is away). What it does speak, enough for the daemon's publisher,
`edge-agent watch` and any paho or mosquitto_sub client:

- CONNECT / CONNACK (protocol level 4; any other is refused with return code 1), keep
  alive (1.5 x the client's interval), client-id takeover, empty client ids;
- SUBSCRIBE / SUBACK with `+` and `#` wildcards (topics starting with `$` are not matched
  by a leading wildcard), UNSUBSCRIBE / UNSUBACK;
- PUBLISH QoS 0 and 1 (PUBACK); QoS 2 from a client is accepted (PUBREC, PUBREL,
  PUBCOMP) and delivered at most at QoS 1, which SUBACK grants at most;
- retained messages (an empty retained payload clears the topic), sent with the retain
  flag to each new matching subscription;
- the last will, published when a client goes without DISCONNECT (socket closed, keep
  alive expired, protocol error, taken over), PINGREQ / PINGRESP, DISCONNECT.

One asyncio loop on a daemon thread serves every client; `start()` returns once the port
listens, `stop()` closes everything within a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger("edge_agent.demo.broker")

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = range(8, 15)
MAX_PACKET = 16 * 1024 * 1024  # larger packets are refused as a protocol error
CONNECT_TIMEOUT_S = 10.0  # a socket that sends no CONNECT is closed after this


class ProtocolError(Exception):
    """The client broke the protocol; its connection is closed (and its will sent)."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 §4.7 matching of a topic name against a filter with `+` and `#`."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    parts, levels = topic_filter.split("/"), topic.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels):
            return False
        if part != "+" and part != levels[index]:
            return False
    return len(parts) == len(levels)


def valid_filter(topic_filter: str) -> bool:
    if not topic_filter or "\x00" in topic_filter:
        return False
    parts = topic_filter.split("/")
    for index, part in enumerate(parts):
        if "#" in part and (part != "#" or index != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True


def valid_topic(topic: str) -> bool:
    return bool(topic) and not any(c in topic for c in "+#\x00")


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def packet(kind: int, flags: int, body: bytes) -> bytes:
    """One control packet: fixed header with the variable-length remaining length."""
    header = bytearray([(kind << 4) | flags])
    length = len(body)
    while True:
        byte, length = length % 128, length // 128
        header.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(header) + body


class _Reader:
    """Walks the body of one packet."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise ProtocolError("packet shorter than its fields")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            return self.binary().decode()
        except UnicodeDecodeError:
            raise ProtocolError("a string is not UTF-8") from None

    @property
    def left(self) -> int:
        return len(self.data) - self.at


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    client_id: str = ""
    keepalive: int = 0
    will: Message | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> granted QoS
    next_id: int = 0
    closed: bool = False

    def send(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)

    def packet_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id


class EmbeddedBroker:
    """`with EmbeddedBroker() as broker:` listens on 127.0.0.1:`broker.port` (a free port
    unless one is given) until the block ends."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: dict[str, _Client] = {}  # connected, by client id
        self._sockets: set[_Client] = set()  # every open connection, CONNECT or not
        self._retained: dict[str, Message] = {}
        self._anonymous = 0

    # -- life cycle ------------------------------------------------------------------
    def start(self, timeout: float = 5.0) -> EmbeddedBroker:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as error:
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close_all())
                loop.close()

        self._thread = threading.Thread(target=run, name="mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise OSError(f"the embedded MQTT broker did not start within {timeout:g} s")
        if failure:
            self._thread.join()
            raise failure[0]
        log.debug("embedded MQTT broker on %s:%d", self.host, self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._sockets):
            client.closed = True
            client.writer.close()
        for client in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.writer.wait_closed(), 1.0)
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one connection ----------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        self._sockets.add(client)
        clean = False
        try:
            kind, flags, body = await asyncio.wait_for(self._read(reader), CONNECT_TIMEOUT_S)
            if kind != CONNECT:
                raise ProtocolError("the first packet is not CONNECT")
            if not self._connect(client, body):
                await writer.drain()
                return
            while True:
                timeout = client.keepalive * 1.5 if client.keepalive else None
                kind, flags, body = await asyncio.wait_for(self._read(reader), timeout)
                if kind == DISCONNECT:
                    clean = True
                    return
                self._handle(client, kind, flags, body)
                await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            ConnectionError,
            ProtocolError,
            OSError,
        ) as error:
            log.debug(
                "client %r: connection ends (%s)",
                client.client_id,
                type(error).__name__ if not str(error) else error,
            )
        finally:
            self._sockets.discard(client)
            was_current = self._clients.get(client.client_id) is client
            if was_current:
                del self._clients[client.client_id]
            if not clean and client.will is not None and (was_current or client.closed):
                self._publish(client.will)
            client.closed = True
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        for _ in range(4):
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            raise ProtocolError("malformed remaining length")
        if length > MAX_PACKET:
            raise ProtocolError(f"packet of {length} bytes is too large")
        body = await reader.readexactly(length) if length else b""
        return first >> 4, first & 0x0F, body

    def _connect(self, client: _Client, body: bytes) -> bool:
        """Handle CONNECT; False when it was refused (CONNACK sent, connection to close)."""
        data = _Reader(body)
        name, level, flags = data.string(), data.u8(), data.u8()
        if name not in ("MQTT", "MQIsdp") or level not in (3, 4):
            client.send(packet(CONNACK, 0, bytes([0, 1])))  # unacceptable protocol version
            return False
        if flags & 0x01:
            raise ProtocolError("reserved CONNECT flag set")
        client.keepalive = data.u16()
        client_id = data.string()
        will = None
        if flags & 0x04:
            topic, payload = data.string(), data.binary()
            if not valid_topic(topic):
                raise ProtocolError(f"invalid will topic {topic!r}")
            will = Message(topic, payload, min(1, (flags >> 3) & 0x03), bool(flags & 0x20))
        if flags & 0x80:
            data.string()  # user name: accepted, not checked
        if flags & 0x40:
            data.binary()  # password
        if not client_id:
            if not flags & 0x02:
                client.send(packet(CONNACK, 0, bytes([0, 2])))  # identifier rejected
                return False
            self._anonymous += 1
            client_id = f"auto-{self._anonymous}"
        client.client_id, client.will = client_id, will
        previous = self._clients.get(client_id)
        if previous is not None:  # takeover: the old connection goes, with its will
            previous.closed = True
            previous.writer.close()
            if previous.will is not None:
                self._publish(previous.will)
                previous.will = None
        self._clients[client_id] = client
        client.send(packet(CONNACK, 0, bytes([0, 0])))
        return True

    def _handle(self, client: _Client, kind: int, flags: int, body: bytes) -> None:
        data = _Reader(body)
        if kind == PUBLISH:
            qos, retain = (flags >> 1) & 0x03, bool(flags & 0x01)
            if qos == 3:
                raise ProtocolError("PUBLISH with QoS 3")
            topic = data.string()
            if not valid_topic(topic):
                raise ProtocolError(f"invalid topic {topic!r}")
            packet_id = data.u16() if qos else 0
            self._publish(Message(topic, data.take(data.left), qos, retain))
            if qos == 1:
                client.send(packet(PUBACK, 0, packet_id.to_bytes(2, "big")))
            elif qos == 2:
                client.send(packet(PUBREC, 0, packet_id.to_bytes(2, "big")))
        elif kind == PUBREL:
            client.send(packet(PUBCOMP, 0, data.take(2)))
        elif kind in (PUBACK, PUBREC, PUBCOMP):
            if kind == PUBREC:  # we never send QoS 2, but answer in kind
                client.send(packet(PUBREL, 2, data.take(2)))
        elif kind == SUBSCRIBE:
            self._subscribe(client, flags, data)
        elif kind == UNSUBSCRIBE:
            packet_id = data.u16()
            while data.left:
                client.subscriptions.pop(data.string(), None)
            client.send(packet(UNSUBACK, 0, packet_id.to_bytes(2, "big")))
        elif kind == PINGREQ:
            client.send(packet(PINGRESP, 0, b""))
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    def _subscribe(self, client: _Client, flags: int, data: _Reader) -> None:
        if flags != 0x02:
            raise ProtocolError("SUBSCRIBE with wrong flags")
        packet_id = data.u16()
        granted = bytearray()
        new: list[tuple[str, int]] = []
        while data.left:
            topic_filter, requested = data.string(), data.u8() & 0x03
            if not valid_filter(topic_filter) or requested == 3:
                granted.append(0x80)
                continue
            qos = min(requested, 1)
            client.subscriptions[topic_filter] = qos
            granted.append(qos)
            new.append((topic_filter, qos))
        if not granted:
            raise ProtocolError("SUBSCRIBE without a topic filter")
        client.send(packet(SUBACK, 0, packet_id.to_bytes(2, "big") + bytes(granted)))
        for topic_filter, qos in new:  # retained messages follow the SUBACK
            for message in list(self._retained.values()):
                if topic_matches(topic_filter, message.topic):
                    self._deliver(client, message, min(qos, message.qos), retain=True)

    # -- routing -------------------------------------------------------------------------
    def _publish(self, message: Message) -> None:
        if message.retain:
            if message.payload:
                self._retained[message.topic] = message
            else:
                self._retained.pop(message.topic, None)
        for client in list(self._clients.values()):
            qos = max(
                (
                    granted
                    for topic_filter, granted in client.subscriptions.items()
                    if topic_matches(topic_filter, message.topic)
                ),
                default=None,
            )
            if qos is not None:
                self._deliver(client, message, min(qos, message.qos), retain=False)

    def _deliver(self, client: _Client, message: Message, qos: int, *, retain: bool) -> None:
        flags = (qos << 1) | (1 if retain else 0)
        body = _string(message.topic)
        if qos:
            body += client.packet_id().to_bytes(2, "big")
        client.send(packet(PUBLISH, flags, body + message.payload))
