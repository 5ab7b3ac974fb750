"""The plain data every stage and sink shares: frames, detections, results, events, states.

This module is the leaf of the package: it imports numpy and nothing of ours, so the
display, the MQTT payload code and the dashboards can use these types without loading the
model runtime or OpenCV.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, get_args

import numpy as np

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENDERS: tuple[str, str] = ("female", "male")
# What a face's `emotion` says when the evidence is too weak for any of EMOTIONS: a low
# smoothed top probability, or a face too small or turned away to read.
UNCERTAIN = "uncertain"

Box = tuple[float, float, float, float]  # x, y, w, h in frame pixels
EventType = Literal["face_appeared", "emotion_changed", "face_lost"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
CameraState = Literal["starting", "ok", "stalled", "lost", "ended", "failed", "stopped"]


class BrokerState(StrEnum):
    """Where the MQTT connection stands; `BrokerStatus` adds the reason for the bad ones."""

    DISABLED = "disabled"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_FAILED = "auth failed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    state: BrokerState
    reason: str = ""

    @property
    def healthy(self) -> bool:
        """Nothing for an owner to fix: connected, on the way, or switched off."""
        return self.state in (BrokerState.CONNECTED, BrokerState.CONNECTING, BrokerState.DISABLED)

    def __str__(self) -> str:
        return f"{self.state}: {self.reason}" if self.reason else str(self.state)


@dataclass(slots=True)
class Frame:
    """One BGR uint8 frame (OpenCV's order, and picamera2's RGB888 layout in memory)."""

    index: int
    t: float  # seconds since the source started, from the source's own clock
    image: np.ndarray  # H x W x 3, uint8, BGR
    wall: float = field(default_factory=time.time)  # when it was captured, for event `ts`
    # Where latency starts, on the monotonic clock: when a camera frame was read, and when
    # the pipeline took a file's frame read at full speed (decoded ahead, it waits its turn).
    read_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Detection:
    """One face in frame pixels.

    `keypoints` is (6, 2) for BlazeFace, in its order: right eye, left eye, nose tip, mouth,
    right ear tragion, left ear tragion (the subject's right, so the image's left). SSD
    models give none, and classifiers then crop the box without levelling it.
    """

    box: Box
    score: float
    keypoints: np.ndarray | None = None


def emotion_dict(values: Any) -> dict[str, float] | None:
    """Scores in EMOTIONS order as the rounded mapping every output format carries."""
    if values is None:
        return None
    return {label: round(float(v), 4) for label, v in zip(EMOTIONS, values, strict=True)}


@dataclass(slots=True)
class FaceResult:
    """One tracked face as reported: rounded, JSON-ready, with no live state behind it."""

    track: int
    box: Box
    score: float
    emotion: str | None
    emotion_scores: dict[str, float] | None
    age: float | None
    gender: str | None
    gender_score: float | None
    confirmed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "track": self.track,
            "box": list(self.box),
            "score": self.score,
            "emotion": self.emotion,
            "emotion_scores": self.emotion_scores,
            "age": self.age,
            "gender": self.gender,
            "gender_score": self.gender_score,
        }


@dataclass(slots=True)
class TrackEvent:
    """A face appeared, changed emotion or was lost; `face` is as of that moment."""

    type: EventType
    t: float
    face: FaceResult
    previous_emotion: str | None = None
    duration_s: float = 0.0


@dataclass(slots=True)
class FrameResult:
    frame: int
    t: float
    faces: list[FaceResult]
    events: list[TrackEvent] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "t": round(self.t, 3),
            "faces": [face.to_json() for face in self.faces],
        }
