"""`edge-agent watch`: a live terminal table of what each device sees, read from MQTT.

Subscribes to `<prefix>/<device|+>/{availability,state,faces,stats,events}` (retained messages
fill the table at once) and redraws with plain ANSI escapes at most four times a second;
when stdout is not a terminal it prints a plain snapshot per change instead. Loads no model
runtime. Ctrl-C exits 0; an unreachable broker is one line on stderr and exit code 69.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

from edge_agent.config import check_topic_part, load_or_default
from edge_agent.subscriber import KINDS, Subscriber, split_topic, topic_filters

log = logging.getLogger("edge_agent.cli.watch")

REDRAW_S = 0.25
RECENT_EVENTS = 8
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


@dataclass
class Device:
    availability: str = "?"
    state: dict[str, Any] | None = None
    faces: dict[str, Any] | None = None  # the per-face detail, with scores
    stats: dict[str, Any] | None = None
    events: int = 0
    last_update: float = 0.0


@dataclass
class Board:
    """Everything received so far, and how to draw it."""

    prefix: str
    broker: str
    status: str = "connecting"
    devices: dict[str, Device] = field(default_factory=dict)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    changed: bool = True

    def receive(self, topic: str, payload: bytes) -> None:
        device_id, kind = split_topic(self.prefix, topic) or ("", "")
        if kind not in KINDS:
            return
        device = self.devices.setdefault(device_id, Device())
        device.last_update = time.time()
        self.changed = True
        if kind == "availability":
            device.availability = payload.decode("utf-8", "replace").strip() or "?"
            return
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(data, dict):
            return
        if kind == "state":
            device.state = data
        elif kind == "faces":
            device.faces = data
        elif kind == "stats":
            device.stats = data
        else:
            device.events += 1
            self.recent.appendleft(_event_line(device_id, data))

    def render(self, now: float | None = None, width: int = 100) -> list[str]:
        now = time.time() if now is None else now
        title = (
            f"edge-agent watch  {self.broker} ({self.status})  "
            f"{len(self.devices)} device(s)  {time.strftime('%H:%M:%S')}  Ctrl-C quits"
        )
        lines = [title, ""]
        if not self.devices:
            lines.append("waiting for devices to publish ...")
        header = (
            f"{'DEVICE':<20} {'STATUS':<8} {'FPS':>6} {'FACES':>5} {'DOMINANT':<10} "
            f"{'EVENTS':>6} {'OUTBOX':>6}  UPDATED"
        )
        if self.devices:
            lines.append(header)
        for device_id in sorted(self.devices):
            device = self.devices[device_id]
            state, stats = device.state or {}, device.stats or {}
            lines.append(
                f"{device_id[:20]:<20} {device.availability[:8]:<8} "
                f"{_num(stats.get('fps'), 1):>6} {_num(state.get('face_count'), 0):>5} "
                f"{state.get('dominant_emotion') or '-'!s:<10} {device.events:>6} "
                f"{_num(stats.get('outbox_depth'), 0):>6}  {_ago(now - device.last_update)}"
            )
            for face in (device.faces or state).get("faces") or []:
                lines.append("    " + _face_line(face))
        if self.recent:
            lines += ["", "recent events (newest first):"]
            lines += [f"  {line}" for line in self.recent]
        return [line[:width] for line in lines]


def _num(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.{digits}f}"


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def _face_line(face: dict[str, Any]) -> str:
    scores = face.get("emotion_scores") or {}
    emotion = face.get("emotion") or "-"
    score = scores.get(emotion) if isinstance(scores, dict) else None
    gender = face.get("gender") or "-"
    gender_score = face.get("gender_score")
    gender_text = gender if gender_score is None else f"{gender} {_num(gender_score, 2)}"
    return (
        f"face #{face.get('track', '?')!s:<5} {emotion:<9} {_num(score, 2):>5}  "
        f"age {_num(face.get('age'), 0):>3}  {gender_text}"
    )


def _event_line(device_id: str, event: dict[str, Any]) -> str:
    stamp = str(event.get("ts", ""))[11:23]
    kind = event.get("type", "?")
    emotion = event.get("emotion") or "-"
    if kind == "emotion_changed":
        emotion = f"{event.get('previous_emotion') or '-'} -> {emotion}"
    return (
        f"{stamp} {device_id} #{event.get('seq', '?')} {kind} "
        f"face #{event.get('track', '?')} {emotion}"
    )


class Screen:
    """Redraws in place on a terminal; prints plain snapshots elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        if self.tty:
            out.write(HIDE_CURSOR)

    def draw(self, board: Board) -> None:
        width = shutil.get_terminal_size((100, 24)).columns if self.tty else 200
        lines = board.render(width=max(20, width))
        if self.tty:
            self.out.write(HOME + "".join(f"{line}{CLEAR_LINE}\n" for line in lines) + CLEAR_BELOW)
        else:
            self.out.write("\n".join(lines) + "\n\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write(SHOW_CURSOR)
            self.out.flush()


def main(args: Any) -> int:
    config = load_or_default(getattr(args, "config", None))
    mqtt = config.mqtt
    device = getattr(args, "device", None) or "+"
    if device != "+":
        check_topic_part("--device", device, allow_slash=False)
    prefix = mqtt.topic_prefix.rstrip("/")
    board = Board(prefix, "")
    subscriber = Subscriber(mqtt, topic_filters(prefix, device, KINDS), board.receive, name="watch")
    board.broker = subscriber.connection.address
    subscriber.connect()
    screen = Screen(sys.stdout)

    def on_status() -> None:
        # Drawn at once: a lost connection is followed by the backoff's wait.
        board.status = subscriber.status
        board.changed = True
        screen.draw(board)

    board.status = subscriber.status
    subscriber.on_status = on_status
    try:
        _loop(subscriber, board, screen)
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.close()
        screen.close()
    return 0


def _loop(subscriber: Subscriber, board: Board, screen: Screen) -> None:
    last_draw = 0.0
    while True:
        subscriber.step(timeout=0.1)
        now = time.monotonic()
        # A terminal is redrawn every second (ages tick); piped output only on a change.
        if (board.changed and now - last_draw >= REDRAW_S) or (
            screen.tty and now - last_draw >= 1.0
        ):
            screen.draw(board)
            board.changed = False
            last_draw = now
