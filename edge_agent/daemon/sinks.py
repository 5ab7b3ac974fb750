"""Where results go: one small protocol, and the appliance's two sinks.

The inference loop hands every `FrameResult` to a list of sinks and knows nothing more
about them; the publisher and the display are sinks, and so are the demo's and the
bench's counters. A sink must return quickly (the loop waits for it) and must not raise:
a failing sink is logged by the loop, and the others still get the result.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge_agent.display import Display, DisplayState
from edge_agent.publish import MqttPublisher
from edge_agent.types import BrokerStatus, CameraState, Frame, FrameResult


class ResultSink(Protocol):
    name: str

    def consume(self, result: FrameResult, frame: Frame | None) -> None:
        """One frame's result; `frame` is None for events made while no frame came (a
        face that expires while the camera is silent, the tracks closed at the end)."""
        ...


@dataclass(frozen=True, slots=True)
class Health:
    """What the supervisor knows about the device, for the panel's idle and fault lines."""

    fps: float
    broker: BrokerStatus
    camera: CameraState
    faults: tuple[str, ...]
    ip: str | None


class PublisherSink:
    name = "publish"

    def __init__(self, publisher: MqttPublisher) -> None:
        self.publisher = publisher

    def consume(self, result: FrameResult, frame: Frame | None) -> None:
        self.publisher.publish_frame(result, frame.wall if frame is not None else time.time())


class DisplaySink:
    name = "display"

    def __init__(self, display: Display, health: Callable[[], Health]) -> None:
        self.display = display
        self.health = health

    def consume(self, result: FrameResult, frame: Frame | None) -> None:
        # Events made without a frame change no picture: while frames stop, the supervisor
        # redraws the panel itself (`show(None, None)`), saying why.
        if frame is not None:
            self.show(result, frame)

    def show(self, result: FrameResult | None, frame: Frame | None) -> None:
        """Also called by the supervisor while no frames come, so a stalled camera shows."""
        health = self.health()
        self.display.update(
            DisplayState(
                faces=result.faces if result is not None else [],
                frame=frame.image if frame is not None else None,
                fps=health.fps,
                broker=health.broker,
                camera=health.camera,
                faults=list(health.faults),
                ip=health.ip,
                wall=time.time(),
            )
        )


class EventCounter:
    """Counts the events of every result it sees: the demo's 'published' figures."""

    name = "events"

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def consume(self, result: FrameResult, frame: Frame | None) -> None:
        self.counts.update(event.type for event in result.events)
