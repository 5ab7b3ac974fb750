"""The appliance's own small screen: faces, idle state and faults, on an OLED, LCD or file.

The daemon calls `update(state)` with each new result — a lock and a reference swap, so the
pipeline never waits for the panel — and a render thread shows the latest state at most
`fps` times a second. `render(state)` is the pure drawing step, used by that thread, the
tests and `scripts/render_screens.py`. See docs/display.md.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from edge_agent.config import DisplayConfig, check_display
from edge_agent.display.care import NightHours, dim_contrast
from edge_agent.display.panels import DisplayError, open_device
from edge_agent.display.screens import Renderer, fault_lines
from edge_agent.types import BrokerState, BrokerStatus, CameraState, FaceResult

__all__ = ["Display", "DisplayError", "DisplayState", "open_display"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DisplayState:
    """Everything the screen shows, as of one moment."""

    faces: list[FaceResult]
    frame: np.ndarray | None = None  # latest BGR frame, for the colour thumbnail; not copied
    fps: float = 0.0
    broker: BrokerStatus = field(default_factory=lambda: BrokerStatus(BrokerState.DISABLED))
    camera: CameraState = "ok"
    faults: list[str] = field(default_factory=list)  # e.g. ["model error: ..."]
    ip: str | None = None
    wall: float = field(default_factory=time.time)  # epoch seconds: night hours, dimming


def open_display(config: DisplayConfig, *, keep_last_picture: bool = False) -> Display | None:
    """The configured panel, opened; None for kind "none". `keep_last_picture` leaves the
    final state on the panel at stop instead of clearing it (the demo's png).

    Raises ConfigError for a bad `night_off`, DisplayError when the panel's driver or bus
    is unavailable (both EdgeAgentError, reported as one line)."""
    if config.kind == "none":
        return None
    check_display(config)  # a typo fails before any hardware is touched
    return Display(config, open_device(config), keep_last_picture=keep_last_picture)


class Display:
    """One panel and the thread that keeps it showing the latest state."""

    def __init__(
        self, config: DisplayConfig, device: Any, *, keep_last_picture: bool = False
    ) -> None:
        self.config = config
        self.device = device
        self.keep_last_picture = keep_last_picture
        if keep_last_picture:
            device.persist = True  # luma's cleanup() then leaves the picture alone
        self.night = NightHours.parse(config.night_off)
        colour = config.color and device.mode != "1"
        self._renderer = Renderer(
            device.width, device.height, colour=colour, shift=config.shift, night=self.night
        )
        self._latest: DisplayState | None = None
        self._lock = threading.Lock()  # guards _latest only
        self._render_lock = threading.Lock()  # the renderer's canvas is reused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown: bytes | None = None
        self.off = False  # panel switched off for the night
        self.contrast: int | None = None  # last contrast sent; None: never set here
        self._active_wall: float | None = None  # last time a face or fault was on screen
        self.frames_shown = 0

    @property
    def colour(self) -> bool:
        return self._renderer.colour

    @property
    def size(self) -> tuple[int, int]:
        return self._renderer.size

    def render(self, state: DisplayState) -> Image.Image:
        """The exact image the panel shows for `state` (before the panel's rotation)."""
        with self._render_lock:
            return self._renderer.render(state)

    @property
    def texts(self) -> list[tuple[str, tuple[int, int, int, int]]]:
        """Each text of the last render and its drawn bounds."""
        return self._renderer.texts

    def update(self, state: DisplayState) -> None:
        """Hand over the newest state; never blocks on the panel."""
        with self._lock:
            self._latest = state

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="display", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and switch the panel off (a stale face would be a lie)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.keep_last_picture:  # the thread is stopped: draw the very last state
            try:
                self.tick()
            except Exception as error:
                log.warning("display: the last picture was not drawn: %s", error)
        try:
            self.device.cleanup()
        except Exception as error:  # the bus may already be gone at shutdown
            log.debug("display cleanup failed: %s", error)

    def _run(self) -> None:
        period = 1.0 / self.config.fps
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
                failures = 0
            except Exception as error:  # a loose wire must not take the daemon down
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    log.warning(
                        "display: cannot update the panel (%s failures): %s", failures, error
                    )
            delay = period if failures == 0 else min(10.0, period * 2 ** min(failures, 6))
            self._stop.wait(max(0.005, delay - (time.monotonic() - started)))

    def tick(self) -> bool:
        """One pass of the render thread: show the latest state; True if the panel was
        written (an unchanged picture is not sent again)."""
        with self._lock:
            state = self._latest
        if state is None:
            return False
        night = self._renderer.is_night(state.wall)
        image = self.render(state)
        if image.mode != self.device.mode:
            image = image.convert(self.device.mode)
        data = image.tobytes()
        written = data != self._shown
        if written:
            self.device.display(image)
            self._shown = data
            self.frames_shown += 1
        if night != self.off:
            (self.device.hide if night else self.device.show)()
            self.off = night
        if not night:
            self._set_contrast(self._wanted_contrast(state))
        return written

    def _wanted_contrast(self, state: DisplayState) -> int:
        if state.faces or fault_lines(state) or self._active_wall is None:
            self._active_wall = state.wall
        idle = state.wall - self._active_wall
        dim_after = self.config.dim_after_s
        if dim_after > 0 and idle >= dim_after:
            return dim_contrast(self.config.contrast)
        return self.config.contrast

    def _set_contrast(self, level: int) -> None:
        if level != self.contrast:
            self.device.contrast(level)
            self.contrast = level
