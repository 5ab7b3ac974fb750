"""Capture: where frames come from. Every source yields BGR uint8 frames with timestamps.

BGR is what OpenCV decodes and what picamera2's "RGB888" format lays out in memory, so no
source pays for a full-frame colour conversion; the models' adapters flip channels on the
small tensors they build instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from edge_agent.types import Frame

__all__ = ["Frame", "FrameSource"]


class FrameSource(Protocol):
    """A finite or endless stream of frames; `fps` is the source's nominal rate if known."""

    fps: float | None

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
