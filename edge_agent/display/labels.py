"""How a face is named and coloured, the same on a panel and in `analyze --annotate`."""

from __future__ import annotations

from edge_agent.types import FaceResult

# BGR colours per emotion, chosen to be told apart at a glance on a small screen.
EMOTION_COLOURS: dict[str | None, tuple[int, int, int]] = {
    "angry": (40, 40, 230),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 250),
    "sad": (200, 120, 40),
    "surprise": (240, 160, 240),
    "neutral": (200, 200, 200),
    None: (160, 160, 160),
}


def label(face: FaceResult) -> str:
    parts = [f"#{face.track}"]
    if face.emotion:
        parts.append(face.emotion)
    if face.age is not None:
        parts.append(f"{face.age:.0f}")
    if face.gender:
        parts.append(face.gender[0].upper())
    return " ".join(parts)
