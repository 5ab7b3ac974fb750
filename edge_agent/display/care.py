"""OLED care: night hours, the slow pixel shift and dimming after idle time.

All three are pure functions of wall-clock time, so a rendered image depends only on the
state it is given and tests can pin the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_agent.config import night_span

SHIFT_PERIOD_S = 180.0
# One step a period, walking round the origin so every pixel rests as often as it works.
SHIFT_OFFSETS: tuple[tuple[int, int], ...] = (
    (0, 0),
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
)


@dataclass(frozen=True, slots=True)
class NightHours:
    """A daily span in local time, in minutes after midnight; may wrap past midnight."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> NightHours | None:
        """ "23:00-07:00" → NightHours; "" → None (never off). The rule is the config's:
        a bad value raises ConfigError naming `display.night_off`."""
        span = night_span(text)
        return None if span is None else cls(*span)

    def contains(self, wall: float) -> bool:
        local = time.localtime(wall)
        minute = local.tm_hour * 60 + local.tm_min
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def shift_offset(wall: float, enabled: bool = True) -> tuple[int, int]:
    """The (dx, dy) the picture is moved by at this time: ±1 px, one step every 3 min."""
    if not enabled:
        return 0, 0
    return SHIFT_OFFSETS[int(wall // SHIFT_PERIOD_S) % len(SHIFT_OFFSETS)]


def dim_contrast(contrast: int) -> int:
    """The contrast used while dimmed: about a tenth of the configured one."""
    return max(1, contrast // 10) if contrast else 0
