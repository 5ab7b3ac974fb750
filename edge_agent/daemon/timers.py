"""One periodic deadline, so the supervisor's loop reads as a list of jobs."""

from __future__ import annotations

import time


class Periodic:
    """Due every `period_s` seconds of the monotonic clock; `first_in_s` for the first time.

    A period of None or 0 is never due (a watchdog systemd did not ask for).
    """

    def __init__(self, period_s: float | None, *, first_in_s: float | None = None) -> None:
        self.period_s = period_s
        start = period_s if first_in_s is None else first_in_s
        self.next_at = time.monotonic() + (start or 0.0)

    @property
    def enabled(self) -> bool:
        return bool(self.period_s)

    def due(self, now: float) -> bool:
        """True once per period; the next deadline counts from `now`."""
        if not self.enabled or now < self.next_at:
            return False
        self.next_at = now + (self.period_s or 0.0)
        return True

    def reset(self, period_s: float | None = None, *, now: float | None = None) -> None:
        """A new period (a reload) takes effect now, not after the old one ends."""
        if period_s is not None:
            self.period_s = period_s
        now = time.monotonic() if now is None else now
        self.next_at = min(self.next_at, now + (self.period_s or 0.0))

    def seconds_left(self, now: float) -> float:
        return max(0.0, self.next_at - now) if self.enabled else float("inf")
