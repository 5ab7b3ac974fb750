"""The fleet as the dashboard knows it, built from MQTT messages alone: each device's
availability, faces, state, health figures and events, and per-second emotion timelines
over the last minutes (per device, per face in view, and the room's mood across devices).

`Fleet.receive` applies one message and hands what changed, as a small JSON document (a
delta), to every attached page; `attach` returns the whole picture (a snapshot) under the
same lock, so a page that applies the snapshot and then the deltas in order is never behind
or ahead. The page only stores and draws: every rule (what counts as gone, what a timeline
point is) lives here, where it is tested.

Every byte from MQTT is untrusted. Payloads are parsed defensively and reduced to the keys
and types the page shows, strings are cut short, and everything kept is bounded (devices,
faces, events, timeline length), so a misbehaving publisher can neither grow this process
nor a page without limit. Escaping is the page's job: it only ever sets text, never markup.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.publish.messages import OFFLINE
from edge_agent.subscriber import KINDS, split_topic
from edge_agent.types import EMOTIONS, UNCERTAIN

log = logging.getLogger("edge_agent.dashboard")

LABELS = (*EMOTIONS, UNCERTAIN)  # what the room's mood counts
WINDOW_S = 300  # the timelines' span: the last five minutes
EVENT_LOG = 200  # events a newly opened page starts with, across the fleet
MAX_DEVICES = 500
MAX_FACES = 32  # per device
MAX_PAYLOAD = 64 * 1024  # bytes; the agent's largest message is a few kB
MAX_DEVICE_ID = 128
TEXT_MAX = 100  # characters of any string shown
SEEN_IDS = 512  # event ids remembered per device, to drop QoS 1 redeliveries

Listener = Callable[[bytes], None]
Row = list[Any]


def _text(value: Any) -> str | None:
    return value[:TEXT_MAX] if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _scores(value: Any) -> Row | None:
    """`emotion_scores` as a row in EMOTIONS order (None where a score is missing)."""
    if not isinstance(value, dict):
        return None
    return [_number(value.get(label)) for label in EMOTIONS]


def _faces(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    faces = []
    for item in value[:MAX_FACES]:
        if isinstance(item, dict):
            faces.append(
                {
                    "track": _whole(item.get("track")),
                    "emotion": _text(item.get("emotion")),
                    "scores": _scores(item.get("emotion_scores")),
                    "age": _number(item.get("age")),
                    "gender": _text(item.get("gender")),
                    "gender_score": _number(item.get("gender_score")),
                }
            )
    return faces


def _stats(data: dict[str, Any]) -> dict[str, Any]:
    latency = data.get("latency_ms")
    latency = latency if isinstance(latency, dict) else {}
    stats: dict[str, Any] = {
        key: _number(data.get(key))
        for key in (
            "fps",
            "frames_dropped",
            "frames_processed",
            "uptime_s",
            "cpu_temp_c",
            "outbox_depth",
            "events_dropped",
        )
    }
    stats.update({key: _text(data.get(key)) for key in ("ts", "accelerator", "camera")})
    stats["outbox_error"] = _text(data.get("outbox_error"))
    stats["latency_ms"] = {key: _number(latency.get(key)) for key in ("p50", "p95", "p99")}
    return stats


def _event(data: dict[str, Any], device: str, received_ms: int) -> dict[str, Any]:
    return {
        "device": device,
        "received": received_ms,
        "id": _text(data.get("id")),
        "seq": _whole(data.get("seq")),
        "type": _text(data.get("type")),
        "ts": _text(data.get("ts")),
        "track": _whole(data.get("track")),
        "emotion": _text(data.get("emotion")),
        "previous_emotion": _text(data.get("previous_emotion")),
        "age": _number(data.get("age")),
        "gender": _text(data.get("gender")),
        "duration_s": _number(data.get("duration_s")),
    }


def mean_scores(faces: list[dict[str, Any]]) -> Row:
    """Each emotion's score averaged over the faces that have scores; all None without."""
    rows = [face["scores"] for face in faces if face["scores"] is not None]
    if not rows:
        return [None] * len(EMOTIONS)
    mean: Row = []
    for column in zip(*rows, strict=True):
        values = [v for v in column if v is not None]
        mean.append(round(sum(values) / len(values), 3) if values else None)
    return mean


class Timeline:
    """One row per second in which the values changed, over the last WINDOW_S. Charts draw
    it as steps, so a value holds until the next row; hence repeats are not stored and the
    newest row older than the window is kept (it is what held at the window's start)."""

    __slots__ = ("rows", "t")

    def __init__(self) -> None:
        self.t: deque[int] = deque()
        self.rows: deque[Row] = deque()

    def put(self, second: int, row: Row) -> bool:
        """Record `row` at `second`; False when it repeats the last row."""
        if self.rows and self.rows[-1] == row:
            return False
        if self.t and self.t[-1] >= second:
            self.rows[-1] = row  # the same second: its latest values win
        else:
            self.t.append(second)
            self.rows.append(row)
        self.trim(second)
        return True

    def trim(self, now_s: float) -> None:
        while len(self.t) > 1 and self.t[1] <= now_s - WINDOW_S:
            self.t.popleft()
            self.rows.popleft()

    def view(self) -> dict[str, Any]:
        return {"t": list(self.t), "v": list(self.rows)}


@dataclass(eq=False)
class Device:
    id: str
    availability: str = "unknown"
    state: dict[str, Any] = field(default_factory=dict)
    latest_faces: list[dict[str, Any]] = field(default_factory=list)
    detail: bool = False  # faces come from <base>/faces, so state's faces are not used
    stats: dict[str, Any] | None = None
    seen_ms: int = 0
    timeline: Timeline = field(default_factory=Timeline)
    face_timelines: dict[int, Timeline] = field(default_factory=dict)
    event_times: deque[int] = field(default_factory=lambda: deque(maxlen=1000))
    seen_ids: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_IDS))

    @property
    def faces(self) -> list[dict[str, Any]]:
        """The faces in view: none while the device is offline (its retained state and
        faces may still list the faces it saw before it died)."""
        return [] if self.availability == OFFLINE else self.latest_faces

    def view(self, now_ms: int) -> dict[str, Any]:
        self.timeline.trim(now_ms / 1000)
        return {
            "id": self.id,
            "availability": self.availability,
            "state": self.state_view(),
            "faces": self.faces,
            "stats": self.stats,
            "seen": self.seen_ms,
            "timeline": self.timeline.view(),
            "face_timelines": {str(k): t.view() for k, t in self.face_timelines.items()},
            "event_times": [t for t in self.event_times if t > now_ms - WINDOW_S * 1000],
        }

    def state_view(self) -> dict[str, Any]:
        if self.availability == OFFLINE:
            return {**self.state, "face_count": 0, "dominant_emotion": None}
        return self.state


class Fleet:
    """Every device under `prefix` (a single one when the subscription says so)."""

    def __init__(
        self, prefix: str, *, device_filter: str = "+", clock: Callable[[], float] = time.time
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.device_filter = device_filter
        self.broker = "connecting"
        self.devices: dict[str, Device] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_LOG)
        self.mood = Timeline()
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._full_warned = False

    # -- pages -------------------------------------------------------------------------------

    def attach(self, listener: Listener) -> bytes:
        """The snapshot as JSON; from now on every delta goes to `listener` (called with the
        lock held, so it must only queue)."""
        with self._lock:
            self._listeners.append(listener)
            return _dumps(self._snapshot())

    def detach(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        now_ms = self._now_ms()
        self.mood.trim(now_ms / 1000)
        return {
            "type": "snapshot",
            "now": now_ms,
            "prefix": self.prefix,
            "device_filter": self.device_filter,
            "window_s": WINDOW_S,
            "emotions": list(EMOTIONS),
            "labels": list(LABELS),
            "broker": self.broker,
            "devices": [device.view(now_ms) for device in self.devices.values()],
            "events": list(self.events),
            "mood": self.mood.view(),
        }

    def _broadcast(self, delta: dict[str, Any]) -> None:
        if not self._listeners:  # (the usual case: no page open, no JSON to build)
            return
        data = _dumps(delta)
        for listener in self._listeners:
            listener(data)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- MQTT --------------------------------------------------------------------------------

    def set_broker(self, status: str) -> None:
        with self._lock:
            self.broker = status
            self._broadcast({"type": "broker", "status": status})

    def receive(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """Apply one message; returns the delta sent to the pages (None: ignored)."""
        parts = split_topic(self.prefix, topic)
        if parts is None or parts[1] not in KINDS or len(parts[0]) > MAX_DEVICE_ID:
            return None
        if len(payload) > MAX_PAYLOAD:
            log.debug("ignored %d bytes on %s: too large", len(payload), topic)
            return None
        device_id, kind = parts
        data: Any = None
        if kind != "availability":
            try:
                data = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                return None
            if not isinstance(data, dict):
                return None
        with self._lock:
            device = self._device(device_id)
            if device is None:
                return None
            now_ms = self._now_ms()
            delta: dict[str, Any] = {"type": "device", "id": device_id, "patch": {}}
            if kind == "events":
                if not self._event(device, data, now_ms, delta):
                    return None
            else:
                if self._update(device, kind, payload, data, delta):
                    self._faces_changed(device, now_ms, delta)
            device.seen_ms = now_ms
            delta["patch"]["seen"] = now_ms
            self._broadcast(delta)
            return delta

    def _device(self, device_id: str) -> Device | None:
        device = self.devices.get(device_id)
        if device is None:
            if len(self.devices) >= MAX_DEVICES:
                if not self._full_warned:
                    self._full_warned = True
                    log.warning("more than %d devices: ignoring the new ones", MAX_DEVICES)
                return None
            device = self.devices[device_id] = Device(device_id)
        return device

    def _update(
        self, device: Device, kind: str, payload: bytes, data: Any, delta: dict[str, Any]
    ) -> bool:
        """Take one message into the device; True if its faces may have moved (a device
        that sends `faces` moves them only there, or by coming and going)."""
        patch = delta["patch"]
        if kind == "availability":
            device.availability = _text(payload.decode("utf-8", "replace").strip()) or "unknown"
            patch["availability"] = device.availability
            patch["state"] = device.state_view()
            return True
        if kind == "stats":
            device.stats = patch["stats"] = _stats(data)
            return False
        if kind == "state":
            device.state = {
                "face_count": _whole(data.get("face_count")),
                "dominant_emotion": _text(data.get("dominant_emotion")),
                "updated_at": _text(data.get("updated_at")),
            }
            patch["state"] = device.state_view()
            if device.detail:
                return False
            device.latest_faces = _faces(data.get("faces"))
            return True
        device.detail = True  # faces
        device.latest_faces = _faces(data.get("faces"))
        return True

    def _event(self, device: Device, data: Any, now_ms: int, delta: dict[str, Any]) -> bool:
        event = _event(data, device.id, now_ms)
        if event["id"] is not None:
            if event["id"] in device.seen_ids:
                return False  # a QoS 1 redelivery
            device.seen_ids.append(event["id"])
        device.event_times.append(now_ms)
        self.events.append(event)
        delta["event"] = event
        return True

    def _faces_changed(self, device: Device, now_ms: int, delta: dict[str, Any]) -> None:
        """The faces, the timelines and the mood after a message that may change them."""
        faces = device.faces
        delta["patch"]["faces"] = faces
        second = now_ms // 1000
        if device.timeline.put(second, mean_scores(faces)):
            delta["point"] = [second, device.timeline.rows[-1]]
        in_view = {face["track"]: face for face in faces if face["track"] is not None}
        for track in [t for t in device.face_timelines if t not in in_view]:
            del device.face_timelines[track]
        points = {}
        for track, face in in_view.items():
            timeline = device.face_timelines.setdefault(track, Timeline())
            if timeline.put(second, face["scores"] or [None] * len(EMOTIONS)):
                points[str(track)] = [second, timeline.rows[-1]]
        if points:
            delta["face_points"] = points
        if self.mood.put(second, self._mood_row()):
            delta["mood"] = [second, self.mood.rows[-1]]

    def _mood_row(self) -> Row:
        """How many faces in view across the fleet show each of LABELS."""
        counts = dict.fromkeys(LABELS, 0)
        for device in self.devices.values():
            for face in device.faces:
                if face["emotion"] in counts:
                    counts[face["emotion"]] += 1
        return [counts[label] for label in LABELS]


def _dumps(document: dict[str, Any]) -> bytes:
    # ASCII JSON on one line: safe in an SSE data field whatever the strings hold.
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("ascii")
