"""Capture: where frames come from. Every source yields BGR uint8 frames with timestamps.

BGR is what OpenCV decodes and what picamera2's "RGB888" format lays out in memory, so no
source pays for a full-frame colour conversion; the models' adapters flip channels on the
small tensors they build instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(slots=True)
class Frame:
    index: int
    t: float  # seconds since the source started, from the source's own clock
    image: np.ndarray  # H x W x 3, uint8, BGR
    wall: float = field(default_factory=time.time)  # when it was captured, for event `ts`
    read_at: float = field(default_factory=time.monotonic)  # the same, for latency


class FrameSource(Protocol):
    """A finite or endless stream of frames; `fps` is the source's nominal rate if known."""

    fps: float | None

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
