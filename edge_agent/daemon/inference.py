"""The inference thread: newest frame → pipeline → every sink, and the stats of each frame.

Tunables from a reload are handed over through `apply()` and taken between two frames, so
a frame is never processed half with the old and half with the new settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from edge_agent.capture.camera import Capture
from edge_agent.config import Config
from edge_agent.daemon.sinks import ResultSink
from edge_agent.daemon.stats import Stats
from edge_agent.types import Frame, FrameResult
from edge_agent.vision.pipeline import Pipeline

log = logging.getLogger("edge_agent.daemon")

TAKE_TIMEOUT_S = 0.25  # how often a silent source lets faces expire and stop be noticed


class InferenceLoop:
    def __init__(
        self,
        pipeline: Pipeline,
        capture: Capture,
        sinks: Sequence[ResultSink],
        stats: Stats,
        *,
        max_frames: int | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.max_frames = max_frames  # end by itself after this many (bench's --frames)
        self.capture = capture
        self.sinks = list(sinks)
        self.stats = stats
        self.failure: BaseException | None = None
        self.first_result = threading.Event()
        self.done = threading.Event()  # ended by itself (source end or failure) or stopped
        self._stop = threading.Event()
        self._pending: Config | None = None
        self._pending_lock = threading.Lock()
        self._last: FrameResult | None = None
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def apply(self, config: Config) -> None:
        """Tunables for the next frame (called from the supervisor on SIGHUP)."""
        with self._pending_lock:
            self._pending = config

    def stop(self, timeout_s: float) -> bool:
        """Ask the thread to end and wait; False if it is stuck (inside a model call)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(0.1, timeout_s))
        return not self._thread.is_alive()

    def close_tracks(self) -> None:
        """End every open track, so subscribers see the faces leave (after stop())."""
        last = self._last
        t = last.t if last is not None else 0.0
        events = self.pipeline.finish(t)
        if events and last is not None:
            self._fan_out(FrameResult(last.frame, t, [], events), None)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.capture.take(timeout=TAKE_TIMEOUT_S)
                if frame is None:
                    if self.capture.ended:
                        break
                    self._expire_tracks()
                    continue
                with self._pending_lock:
                    pending, self._pending = self._pending, None
                if pending is not None:
                    self.pipeline.apply_tunables(pending)
                    log.info(
                        "tunables in effect from frame %d (detector.score_threshold = %s)",
                        frame.index,
                        self.pipeline.detector.score_threshold,
                    )
                result = self.pipeline.process(frame)
                self._last = result
                handed_over = self._fan_out(result, frame)
                self.stats.record(
                    (handed_over - frame.read_at) * 1e3, len(result.faces), result.stages_ms
                )
                self.first_result.set()
                if self.max_frames is not None and self.stats.processed >= self.max_frames:
                    break
        except BaseException as error:  # a bug or a broken model: exit, systemd restarts
            self.failure = error
            log.error("inference failed: %r", error, exc_info=True)
        finally:
            self.done.set()

    def _fan_out(self, result: FrameResult, frame: Frame | None) -> float:
        """Give the result to each sink, timing each as its stage; returns when the first
        sink (the publisher, if any) had it: where the latency of a frame ends."""
        handed_over = 0.0
        for sink in self.sinks:
            started = time.perf_counter()
            try:
                sink.consume(result, frame)
            except Exception as error:  # one broken sink must not starve the others
                log.error("%s failed: %s", sink.name, error)
            result.stages_ms[sink.name] = (time.perf_counter() - started) * 1e3
            if not handed_over:
                handed_over = time.monotonic()
        return handed_over or time.monotonic()

    def _expire_tracks(self) -> None:
        """A live camera that delivers nothing still ends faces on time, so dashboards
        do not show a face that is long gone."""
        if not self.capture.spec.live or not self.pipeline.tracker.tracks:
            return
        events = self.pipeline.expire(self.capture.clock())
        if events:
            last = self._last
            self._fan_out(
                FrameResult(self.stats.processed, last.t if last else 0.0, [], events), None
            )
