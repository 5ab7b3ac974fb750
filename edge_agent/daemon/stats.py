"""Counters the inference thread writes and the supervisor, bench and demo read."""

from __future__ import annotations

import threading
import time
from collections import deque

FPS_WINDOW_S = 5.0
LATENCY_KEEP = 10_000  # latencies kept between two readers; older ones are dropped


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


class Stats:
    """Frames, faces, latency and per-stage time; safe to read from any thread."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.processed = 0
        self.faces = 0
        self._times: deque[float] = deque()
        self._latency_ms: list[float] = []
        self._lock = threading.Lock()
        self.first_result_at: float | None = None
        self.last_result_at = 0.0
        # Sums per stage, for `edge-agent bench`: adding floats costs nothing per frame.
        self.stage_ms_total: dict[str, float] = {}

    def record(self, latency_ms: float, faces: int, stages_ms: dict[str, float]) -> None:
        now = time.monotonic()
        with self._lock:
            if self.first_result_at is None:
                self.first_result_at = now
            self.last_result_at = now
            self.processed += 1
            self.faces = faces
            for stage, ms in stages_ms.items():
                self.stage_ms_total[stage] = self.stage_ms_total.get(stage, 0.0) + ms
            self._times.append(now)
            self._latency_ms.append(latency_ms)
            if len(self._latency_ms) > LATENCY_KEEP:
                del self._latency_ms[: LATENCY_KEEP // 2]

    @property
    def fps(self) -> float:
        """Frames processed per second over the last FPS_WINDOW_S."""
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] > FPS_WINDOW_S:
                self._times.popleft()
            count = len(self._times)
        span = min(FPS_WINDOW_S, now - self.started)
        return count / span if span > 0.5 else 0.0

    @property
    def mean_fps(self) -> float:
        """Frames per second from the first result to the last (bench, demo summaries)."""
        span = self.last_result_at - (self.first_result_at or self.last_result_at)
        return (self.processed - 1) / span if self.processed > 1 and span > 0 else 0.0

    def take_latencies(self) -> list[float]:
        with self._lock:
            values, self._latency_ms = self._latency_ms, []
        return values
