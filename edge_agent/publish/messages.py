"""Topic names and payload builders: the one place the MQTT contract is written in code.

Every payload here has a JSON Schema in `edge_agent/schemas/`, documented in docs/mqtt.md;
the tests validate each message the publisher sends against it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from edge_agent.types import UNCERTAIN, FaceResult, TrackEvent

ONLINE = "online"
OFFLINE = "offline"
SCHEMA_NAMES = ("availability", "state", "faces", "event", "stats", "discovery")
AGE_STEP_YEARS = 2  # how far a face's age estimate must move before `state` changes
GENDER_SWITCH = 0.6  # the confidence a new gender needs before `state` says it


@dataclass(frozen=True, slots=True)
class Topics:
    base: str

    @classmethod
    def of(cls, prefix: str, device_id: str) -> Topics:
        return cls(f"{prefix.rstrip('/')}/{device_id}")

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def faces(self) -> str:
        return f"{self.base}/faces"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"


def iso_utc(wall: float) -> str:
    """`2025-05-01T12:00:00.123Z`: ISO 8601, UTC, milliseconds."""
    stamp = datetime.fromtimestamp(round(wall, 3), UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def event_payload(event: TrackEvent, *, device: str, ts: str) -> dict[str, Any]:
    """An event without its `seq`, which the outbox assigns when it stores it."""
    face = event.face
    return {
        "id": str(uuid.uuid4()),
        "seq": 0,
        "type": event.type,
        "ts": ts,
        "device": device,
        "t": round(float(event.t), 3),
        "track": face.track,
        "emotion": face.emotion,
        "previous_emotion": event.previous_emotion if event.type == "emotion_changed" else None,
        "emotion_scores": face.emotion_scores,
        "age": face.age,
        "gender": face.gender,
        "gender_score": face.gender_score,
        "duration_s": round(float(event.duration_s), 3) if event.type == "face_lost" else None,
    }


def face_entry(face: FaceResult) -> dict[str, Any]:
    """One face of `faces`: everything the classifiers say, as it moves frame by frame."""
    return {
        "track": face.track,
        "emotion": face.emotion,
        "emotion_scores": face.emotion_scores,
        "age": face.age,
        "gender": face.gender,
        "gender_score": face.gender_score,
    }


def dominant_emotion(faces: list[dict[str, Any]], previous: str | None = None) -> str | None:
    """The emotion most faces show. A tie keeps `previous` when it is one of the tied, so
    two faces with two emotions do not flip the answer on score jitter; otherwise it goes
    to the larger summed score. Faces that are "uncertain" count only when no face states
    an emotion."""
    stated = [face["emotion"] for face in faces if face["emotion"] not in (None, UNCERTAIN)]
    if not stated:
        return UNCERTAIN if any(face["emotion"] == UNCERTAIN for face in faces) else None
    counts = Counter(stated)

    def weight(label: str) -> tuple[int, bool, float]:
        total = sum((face.get("emotion_scores") or {}).get(label, 0.0) for face in faces)
        return counts[label], label == previous, total

    return max(counts, key=weight)


def faces_body(faces: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-face detail now, without the time stamp (equal bodies mean no change)."""
    faces = sorted(faces, key=lambda face: face["track"])
    return {"face_count": len(faces), "faces": faces}


def stated_age(age: float | None, previous: int | None) -> int | None:
    """The age `state` carries: whole years that move only when the estimate has moved by
    AGE_STEP_YEARS, so a smoothed 32.4 ↔ 32.6 does not become a recorded state change."""
    if age is None:
        return previous
    if previous is None or abs(age - previous) >= AGE_STEP_YEARS:
        return round(age)
    return previous


def stated_gender(gender: str | None, score: float | None, previous: str | None) -> str | None:
    """The gender `state` carries: a face near 0.5 would flip it every second, so another
    gender replaces the stated one only with a confidence of GENDER_SWITCH or more."""
    if previous is None or gender is None:
        return gender or previous
    if gender != previous and (score or 0.0) >= GENDER_SWITCH:
        return gender
    return previous


def state_body(
    faces: list[dict[str, Any]],
    ages: dict[int, int | None],
    genders: dict[int, str | None],
    previous_dominant: str | None = None,
) -> dict[str, Any]:
    """What an owner acts on (count, dominant emotion, each face's emotion, age and
    gender), without the time stamp; `ages` and `genders` hold each track's stated ones."""
    faces = sorted(faces, key=lambda face: face["track"])
    return {
        "face_count": len(faces),
        "dominant_emotion": dominant_emotion(faces, previous_dominant),
        "faces": [
            {
                "track": face["track"],
                "emotion": face["emotion"],
                "age": ages.get(face["track"]),
                "gender": genders.get(face["track"]),
            }
            for face in faces
        ],
    }


def stamped(body: dict[str, Any], *, device: str, updated_at: str) -> dict[str, Any]:
    """A `state` or `faces` body as published."""
    return {"device": device, "updated_at": updated_at, **body}


def stats_payload(
    stats: dict[str, Any],
    *,
    device: str,
    ts: str,
    accelerator: str,
    outbox_depth: int,
    events_dropped: int,
    outbox_error: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"device": device, "ts": ts, "accelerator": accelerator}
    payload.update(stats)
    payload.update(outbox_depth=outbox_depth, events_dropped=events_dropped)
    if outbox_error:
        payload["outbox_error"] = outbox_error
    return payload


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one payload kind, from the installed package."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no schema named {name!r} (known: {', '.join(SCHEMA_NAMES)})")
    text = (
        resources.files("edge_agent")
        .joinpath("schemas", f"{name}.schema.json")
        .read_text(encoding="utf-8")
    )
    return json.loads(text)
