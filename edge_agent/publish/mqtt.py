"""The MQTT publisher the daemon drives: events through the durable outbox, state, stats,
availability and Home Assistant discovery. See docs/mqtt.md for the contract.

A thin facade over two halves that run on different threads: `ResultFeed` (the inference
thread: events into the outbox, the state body) and `Sender` (the network thread: the
connection, the in-flight window, acknowledgements). They share only the outbox, which
locks itself, and the sender's pending slots.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_agent.config import Config, check_mqtt, check_topic_part
from edge_agent.publish.connection import Connection, MqttError, connect_once
from edge_agent.publish.discovery import node_id
from edge_agent.publish.feed import ResultFeed
from edge_agent.publish.messages import Topics
from edge_agent.publish.outbox import Outbox
from edge_agent.publish.sender import Sender
from edge_agent.types import BrokerState, BrokerStatus, FrameResult

log = logging.getLogger("edge_agent.mqtt")

OUTBOX_FILE = "outbox.sqlite3"


class MqttPublisher:
    """Publishes one device's events, state and stats."""

    def __init__(self, config: Config, *, accelerator: str = "cpu", hardware: str = "") -> None:
        mqtt = config.mqtt
        self.device_id = config.effective_device_id
        # The rules live in edge_agent.config and ran when the file was loaded; applied
        # again for a config built in code and for the host name standing in as device id.
        check_topic_part("device_id", self.device_id, allow_slash=False)
        check_mqtt(mqtt)
        self.connection = Connection.from_config(mqtt)  # reads the password, builds TLS
        self.topics = Topics.of(mqtt.topic_prefix, self.device_id)
        self.client_id = mqtt.client_id or f"edge-agent-{node_id(self.device_id)}"
        self.accelerator = accelerator
        self.hardware = hardware  # the board, for Home Assistant's device page
        self.outbox_path = Path(config.state.dir) / OUTBOX_FILE
        self._mqtt = mqtt
        self._outbox: Outbox | None = None
        self._feed: ResultFeed | None = None
        self._sender: Sender | None = None
        self._stopped = False

    @property
    def status(self) -> BrokerStatus:
        """Connected, connecting, disconnected (and why), auth failed or refused."""
        if self._sender is None or self._stopped:
            return BrokerStatus(BrokerState.DISCONNECTED)
        return self._sender.status

    @property
    def outbox_depth(self) -> int:
        return 0 if self._outbox is None else self._outbox.depth

    @property
    def last_seq(self) -> int:
        """The `seq` of the newest event stored (0 before the first, ever)."""
        return 0 if self._outbox is None else self._outbox.last_seq(self.device_id)

    @property
    def events_dropped(self) -> int:
        """Events that will never be delivered: trimmed from a full outbox, refused by the
        broker, or not storable (disk full)."""
        trimmed = 0 if self._outbox is None else self._outbox.dropped
        rejected = 0 if self._sender is None else self._sender.rejected
        failed = 0 if self._feed is None else self._feed.store_failures
        return trimmed + rejected + failed

    def start(self, stats: dict[str, object] | None = None, *, hold_online: bool = False) -> None:
        """Open the outbox and start the sender thread; returns at once. `stats`, when
        given, is the first stats message: it goes out before `online`. With `hold_online`
        `online` waits for `announce()`."""
        if self._sender is not None:
            return
        if self._stopped:
            raise RuntimeError("MqttPublisher cannot be restarted after stop()")
        mqtt = self._mqtt
        outbox = self._outbox = Outbox(
            self.outbox_path,
            max_events=mqtt.outbox_max_events,
            max_bytes=mqtt.outbox_max_bytes,
            sync=mqtt.outbox_sync,
        )
        if outbox.depth:
            log.info("outbox holds %d unsent event(s); they go out first", outbox.depth)
        sender = self._sender = Sender(
            self.connection,
            self.topics,
            device_id=self.device_id,
            client_id=self.client_id,
            mqtt=mqtt,
            accelerator=self.accelerator,
            hardware=self.hardware,
            outbox=outbox,
            events_dropped=lambda: self.events_dropped,
            announce=not hold_online,
        )
        self._feed = ResultFeed(
            outbox, self.topics, self.device_id, sender.offer_state, sender.offer_faces, sender.wake
        )
        self._feed.offer_first()
        if stats is not None:
            sender.offer_stats(stats)
        sender.start()

    def publish_frame(self, result: FrameResult, wall: float) -> None:
        """Store the frame's events in the outbox and refresh the state; never blocks on
        the network. `wall` is the frame's capture time (seconds since the epoch)."""
        if self._feed is None:
            raise RuntimeError("MqttPublisher.publish_frame() needs start() first")
        if self._stopped:
            if result.events:
                log.warning("%d event(s) after stop() not stored", len(result.events))
            return
        self._feed.consume(result, wall)

    def announce(self) -> None:
        """Let `online` go out (after the state and stats it follows)."""
        if self._sender is not None:
            self._sender.announce()

    def publish_stats(self, stats: dict[str, object]) -> None:
        """Send `<base>/stats` (the latest only, if offline); adds outbox_depth and
        events_dropped."""
        if self._sender is not None:
            self._sender.offer_stats(stats)

    def set_stats_interval(self, seconds: float) -> None:
        if self._sender is not None:
            self._sender.set_stats_interval(seconds)

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Send what the outbox holds (for at most `flush_timeout_s`), publish `offline`,
        disconnect and close the outbox. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self._sender is not None:
            self._sender.stop(flush_timeout_s)
        if self._outbox is not None:
            left = self._outbox.depth
            if left:
                log.info("%d event(s) stay in the outbox for the next start", left)
            self._outbox.close()

    def check(self, timeout_s: float = 5.0) -> tuple[bool, str]:
        """Connect and authenticate once (for `edge-agent check`); publishes nothing."""
        try:
            client = connect_once(self.connection, f"{self.client_id}-check", timeout_s)
        except MqttError as error:
            return False, str(error)
        client.disconnect()
        return True, f"connected to {self.connection.describe()}"
