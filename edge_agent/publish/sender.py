"""The network thread of the publisher: connection, window, acknowledgements, backlog.

The sender owns the paho client and runs its network loop itself (select on the socket and
a wake-up pipe), so everything paho does happens on this one thread. Other threads hand it
work only through `offer_state`, `offer_faces`, `offer_stats`, `set_stats_interval` and
`wake`.

On every connection the retained picture is rebuilt before `online` is said: discovery
configs, then the current `state`, `faces` and stats. A subscriber (Home Assistant) that
sees the device come online therefore never shows the previous run's faces or frame rate
first.

Each connection gets a fresh paho client: paho's own in-memory resend queue never
outlives a connection, and after a reconnect the backlog is re-read from the outbox,
oldest first. Delivery is at least once: an event whose PUBACK was lost is sent again,
with the same `id` and `seq`, so a consumer can drop the duplicate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import MqttConfig
from edge_agent.publish.connection import (
    CONNECT_TIMEOUT_S,
    Backoff,
    Connection,
    MqttError,
    last_error,
)
from edge_agent.publish.discovery import discovery_messages, status_topic
from edge_agent.publish.messages import OFFLINE, ONLINE, Topics, dumps, iso_utc, stats_payload
from edge_agent.publish.outbox import Outbox
from edge_agent.types import BrokerState, BrokerStatus

log = logging.getLogger("edge_agent.mqtt")

WINDOW = 64  # QoS 1 messages in flight at once (lowered to the broker's Receive Maximum)
STABLE_CONNECTION_S = 30.0  # up this long, a connection resets the reconnect backoff
ACK_BATCH, ACK_DELAY_S = 64, 0.05  # acknowledged rows are deleted together, soon
_Message = tuple[str, bytes, int, bool]  # topic, payload, qos, retain


@dataclasses.dataclass(slots=True)
class _Latest:
    """A retained topic where only the newest payload matters, sent at most once every
    `interval_s` and always ending on the latest."""

    topic: str
    qos: int
    interval_s: float
    pending: dict[str, Any] | None = None  # under the sender's lock
    last: dict[str, Any] | None = None  # the sender thread only, from here on
    sent_at: float = 0.0

    def due(self, now: float) -> float:
        return self.sent_at + self.interval_s - now


# paho reports a socket the broker closed (a broker shutting down, restarting, or dropping
# us) as 128 "Unspecified error", which reads like a fault of ours.
_DISCONNECT_WORDS = {
    128: "the broker closed the connection",
    139: "the broker closed the connection (server shutting down)",
}


def disconnect_reason(reason: ReasonCode) -> str:
    """Plain words for why the connection ended."""
    return _DISCONNECT_WORDS.get(reason.value, str(reason).lower())


def _disconnected(reason: str) -> BrokerStatus:
    return BrokerStatus(BrokerState.DISCONNECTED, reason)


class Sender:
    """Sends one device's outbox backlog, state, stats, availability and discovery."""

    def __init__(
        self,
        connection: Connection,
        topics: Topics,
        *,
        device_id: str,
        client_id: str,
        mqtt: MqttConfig,
        accelerator: str,
        hardware: str,
        outbox: Outbox,
        events_dropped: Callable[[], int],
        announce: bool = True,
    ) -> None:
        self.connection = connection
        self.topics = topics
        self.device_id = device_id
        self.client_id = client_id
        self.accelerator = accelerator
        self.hardware = hardware
        self._mqtt = mqtt
        self._outbox = outbox
        self._events_dropped = events_dropped
        self._thread: threading.Thread | None = None
        self._status = BrokerStatus(BrokerState.CONNECTING)
        self._stopping = threading.Event()
        self._announce = threading.Event()  # `online` may be said (see announce())
        if announce:
            self._announce.set()
        self._stop_deadline = 0.0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Shared with the other threads, under the lock.
        self._lock = threading.Lock()
        self._state = _Latest(topics.state, 1, mqtt.state_interval_s)
        self._faces = _Latest(topics.faces, 0, mqtt.faces_interval_s)
        self._pending_stats: tuple[dict[str, Any], float] | None = None
        # This thread only.
        self._client: paho.Client | None = None
        self._connack: tuple[ReasonCode, Any] | None = None
        self._connected = False
        self._disconnect_reason = ""
        self._inflight: dict[int, int | None] = {}  # mid -> outbox id (None: not an event)
        self._acked: list[int] = []  # PUBACKed outbox ids, deleted in batches
        self._acked_since = 0.0
        self._cursor = 0
        self._window = WINDOW
        self._control: deque[_Message] = deque()
        self._last_stats: tuple[dict[str, Any], float] | None = None
        self._resend_discovery = False
        self._online_sent = False  # on this connection
        self.rejected = 0  # events the broker refused: never delivered
        self._last_failure: BrokerStatus | None = None
        self._connected_at: float | None = None

    # -- the other threads' side ---------------------------------------------------------

    @property
    def status(self) -> BrokerStatus:
        return self._status

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-agent-mqtt", daemon=True)
        self._thread.start()

    def offer_state(self, payload: dict[str, Any]) -> None:
        """The newest state replaces any not yet sent."""
        self._offer(self._state, payload)

    def offer_faces(self, payload: dict[str, Any]) -> None:
        """The newest per-face detail replaces any not yet sent."""
        self._offer(self._faces, payload)

    def _offer(self, slot: _Latest, payload: dict[str, Any]) -> None:
        with self._lock:
            slot.pending = payload
        self.wake()

    def offer_stats(self, stats: dict[str, Any]) -> None:
        """The newest stats replace any not yet sent (offline, only the latest goes)."""
        with self._lock:
            self._pending_stats = (dict(stats), time.time())
        self.wake()

    def set_stats_interval(self, seconds: float) -> None:
        """A reloaded stats period. Home Assistant's fps sensor expires after a few missed
        periods, so its discovery config is sent again with the new one."""
        if seconds != self._mqtt.stats_interval_s:
            self._mqtt = dataclasses.replace(self._mqtt, stats_interval_s=seconds)
            self._resend_discovery = True
            self.wake()

    def stop(self, flush_timeout_s: float) -> None:
        """Send what may go for at most `flush_timeout_s`, publish `offline`, disconnect."""
        thread = self._thread
        if thread is not None:
            self._stop_deadline = time.monotonic() + max(0.0, flush_timeout_s)
            self._stopping.set()
            self.wake()
            thread.join(timeout=max(0.0, flush_timeout_s) + CONNECT_TIMEOUT_S + 2.0)
            if thread.is_alive():
                log.warning("MQTT sender did not stop in time")
        self._wake_r.close()
        self._wake_w.close()
        self._status = _disconnected("")

    def announce(self) -> None:
        """From now on `online` may be said: the daemon calls it once the first frames are
        through, so the state sent before it already holds the faces in view (not an empty
        one that Home Assistant would show as "no one there" for a moment)."""
        self._announce.set()
        self.wake()

    def wake(self) -> None:
        # OSError: the pipe is full (a wake-up is pending anyway) or already closed.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- this thread ----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self._mqtt.reconnect_min_s, self._mqtt.reconnect_max_s)
        attempts = 0
        while attempts == 0 or not self._stopping.is_set():  # one try even if stopped at once
            attempts += 1
            if self._last_failure is None:  # while retrying, the reason stays on show
                self._status = BrokerStatus(BrokerState.CONNECTING)
            try:
                failure = self._connection()
            except Exception as error:  # a bug must not end publishing for good
                log.exception("MQTT sender failed")
                failure = _disconnected(f"internal error {error!r}")
            finally:
                self._client = None
                self._connected = False
            if failure is None or self._stopping.is_set():
                break
            if self._connected_at is not None:
                if time.monotonic() - self._connected_at >= STABLE_CONNECTION_S:
                    backoff.reset()  # a connection that held: start again from the floor
                    self._last_failure = None
                self._connected_at = None
            self._retry_later(failure, backoff)
        self._status = _disconnected("")

    def _retry_later(self, failure: BrokerStatus, backoff: Backoff) -> None:
        delay = backoff.next()
        self._status = failure
        level = logging.DEBUG if failure == self._last_failure else logging.WARNING
        log.log(level, "MQTT %s: %s; retrying in %.1f s", self.connection.address, failure, delay)
        self._last_failure = failure
        deadline = time.monotonic() + delay
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            select.select([self._wake_r], [], [], remaining)
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _connection(self) -> BrokerStatus | None:
        """One connection from CONNECT to its end. Returns why it ended (None: stopped)."""
        client = self.connection.new_client(
            self.client_id, will=(self.topics.availability, OFFLINE)
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client, self._connack, self._connected = client, None, False
        self._disconnect_reason = ""
        self._inflight.clear()
        if self._acked:  # acknowledged before the drop
            self._outbox.delete(self._acked)
        self._acked = []
        self._control.clear()
        self._cursor = 0
        try:
            self.connection.open(client)
        except MqttError as error:
            return _disconnected(error.reason)
        connack_deadline = time.monotonic() + CONNECT_TIMEOUT_S
        answered = False
        while True:
            now = time.monotonic()
            if not answered:
                if self._connack is not None:
                    answered = True
                    reason, properties = self._connack
                    if reason.is_failure:
                        self._close(client)
                        return self.connection.refusal(reason)
                    self._on_connected(client, properties)
                elif now > connack_deadline:
                    self._close(client)
                    return _disconnected("the broker did not answer CONNECT")
            if self._stopping.is_set() and (
                now >= self._stop_deadline or (self._connected and self._flushed())
            ):
                self._shutdown(client)  # (a connection still being set up is waited for)
                return None
            if self._connected:
                self._pump(client, now)
            sock = client.socket()
            if sock is None:
                cause = self._disconnect_reason or last_error(client) or "connection lost"
                return _disconnected(cause)
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            readable, writable, _ = select.select(
                [sock, self._wake_r],
                [sock] if client.want_write() else [],
                [],
                0.0 if pending else self._timeout(now),
            )
            if self._wake_r in readable:
                self._drain_wake()
            if pending or sock in readable:
                client.loop_read()
            if sock in writable and client.socket() is not None:
                client.loop_write()
            if client.socket() is not None:
                client.loop_misc()

    def _timeout(self, now: float) -> float:
        if self._stopping.is_set():
            return max(0.0, min(0.05, self._stop_deadline - now))
        if self._acked:
            return max(0.0, self._acked_since + ACK_DELAY_S - now)
        with self._lock:
            waiting = [slot for slot in (self._state, self._faces) if slot.pending is not None]
        if waiting and self._connected and len(self._inflight) < self._window:
            # (with the window full only an ack can let it go: wait on the socket, or
            # select() would return at once and spin)
            return max(0.0, min(1.0, *(slot.due(now) for slot in waiting)))
        return 1.0

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connack = (reason, properties)

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        self._connected = False
        if reason is not None and reason.is_failure:
            self._disconnect_reason = disconnect_reason(reason)

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode, _properties: Any
    ) -> None:
        if mid not in self._inflight:
            return
        row_id = self._inflight.pop(mid)
        if row_id is None:
            return
        if reason is not None and reason.is_failure:
            self.rejected += 1
            log.warning("the broker refused an event (%s); it is dropped", reason)
        if not self._acked:
            self._acked_since = time.monotonic()
        self._acked.append(row_id)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if message.payload.strip().lower() == ONLINE.encode():
            log.info("Home Assistant came online; sending discovery again")
            self._resend_discovery = True

    def _on_connected(self, client: paho.Client, properties: Any) -> None:
        # The backoff is reset only once the connection has held for a while: two agents
        # with one client id, or a broker that drops us after CONNACK, must not reconnect
        # every half second forever.
        self._connected = True
        self._connected_at = time.monotonic()
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        self._window = max(1, min(WINDOW, receive_maximum or WINDOW))
        self._status = BrokerStatus(BrokerState.CONNECTED)
        log.info("MQTT connected to %s", self.connection.describe())
        if self._mqtt.discovery:
            client.subscribe(status_topic(self._mqtt.discovery_prefix), qos=1)
            self._queue_discovery()
        self._online_sent = False
        if self._announce.is_set():
            self._queue_online(again=True)

    def _queue_online(self, *, again: bool) -> None:
        """The current picture, then `online`: what is pending, and with `again` (a new
        connection) what was sent before too, since the broker may have lost it or hold the
        previous run's. A subscriber that sees `online` must see the truth."""
        self._online_sent = True
        now = time.monotonic()
        for slot in (self._state, self._faces):
            with self._lock:
                payload, slot.pending = slot.pending or (slot.last if again else None), None
            if payload is not None:
                slot.last, slot.sent_at = payload, now
                self._control.append((slot.topic, dumps(payload), slot.qos, True))
        with self._lock:
            stats = self._pending_stats or (self._last_stats if again else None)
            self._pending_stats = None
        if stats is not None:
            self._last_stats = stats
            self._control.append((self.topics.stats, self._stats_message(*stats), 0, True))
        self._control.append((self.topics.availability, ONLINE.encode(), 1, True))

    def _queue_discovery(self) -> None:
        for topic, config in discovery_messages(
            self.device_id,
            self.topics,
            self._mqtt.discovery_prefix,
            stats_interval_s=self._mqtt.stats_interval_s,
            area=self._mqtt.area,
            hardware=self.hardware,
        ):
            self._control.append((topic, dumps(config), 1, True))

    def _pump(self, client: paho.Client, now: float) -> None:
        """Send what may go now: control messages, then state, stats, then the backlog."""
        outbox = self._outbox
        if self._acked and (
            len(self._acked) >= ACK_BATCH
            or self._stopping.is_set()
            or now - self._acked_since >= ACK_DELAY_S
        ):
            outbox.delete(self._acked)
            self._acked = []
        if self._resend_discovery:
            self._resend_discovery = False
            if self._mqtt.discovery:
                self._queue_discovery()
        if not self._online_sent and self._announce.is_set():
            self._queue_online(again=False)  # (what was sent since the connect stands)
        while self._control and len(self._inflight) < self._window:
            if not self._send(client, *self._control.popleft()):
                return
        stopping = self._stopping.is_set()  # (the last payloads go now, not in 0.2 s)
        for slot in (self._state, self._faces):
            if len(self._inflight) < self._window and (stopping or slot.due(now) <= 0):
                with self._lock:
                    payload, slot.pending = slot.pending, None
                if payload is not None:
                    slot.last, slot.sent_at = payload, now
                    if not self._send(client, slot.topic, dumps(payload), slot.qos, True):
                        return
        with self._lock:
            stats, self._pending_stats = self._pending_stats, None
        if stats is not None:
            self._last_stats = stats
            if not self._send(client, self.topics.stats, self._stats_message(*stats), 0, True):
                return
        while len(self._inflight) < self._window:
            rows = outbox.read(self._cursor, self._window - len(self._inflight))
            if not rows:
                break
            for row_id, topic, body in rows:
                if not self._send(client, topic, body, 1, False, row_id):
                    return
                self._cursor = row_id

    def _stats_message(self, stats: dict[str, Any], wall: float) -> bytes:
        outbox = self._outbox
        return dumps(
            stats_payload(
                stats,
                device=self.device_id,
                ts=iso_utc(wall),
                accelerator=self.accelerator,
                outbox_depth=outbox.depth,
                events_dropped=self._events_dropped(),
                outbox_error=outbox.error,
            )
        )

    def _send(
        self,
        client: paho.Client,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        row_id: int | None = None,
    ) -> bool:
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        if qos:
            self._inflight[info.mid] = row_id
        return True

    def _flushed(self) -> bool:
        with self._lock:
            pending = (
                self._state.pending is not None
                or self._faces.pending is not None
                or self._pending_stats is not None
            )
        return (
            not pending
            and not self._control
            and not self._inflight
            and not self._acked
            and self._outbox.depth == 0
        )

    def _shutdown(self, client: paho.Client) -> None:
        """Publish `offline` (waiting briefly for its PUBACK), then disconnect."""
        outbox = self._outbox
        if self._connected and client.socket() is not None:
            info = client.publish(self.topics.availability, OFFLINE.encode(), qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._inflight[info.mid] = None
                deadline = max(self._stop_deadline, time.monotonic() + 1.0)
                while info.mid in self._inflight and client.socket() is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    sock = client.socket()
                    if sock is None:
                        break
                    select.select(
                        [sock], [sock] if client.want_write() else [], [], min(remaining, 0.1)
                    )
                    client.loop_read()
                    if client.socket() is not None and client.want_write():
                        client.loop_write()
            self._close(client)
        if outbox is not None and self._acked:
            outbox.delete(self._acked)
            self._acked = []

    def _close(self, client: paho.Client) -> None:
        if client.socket() is None:
            return
        client.disconnect()
        if client.socket() is not None and client.want_write():
            client.loop_write()
        if client.socket() is not None:
            client.socket().close()  # type: ignore[union-attr]
