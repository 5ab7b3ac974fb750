"""Fonts for the panel: DejaVu Sans Bold where the system has it, else Pillow's own.

Nothing is downloaded. Raspberry Pi OS and Debian ship DejaVu (fonts-dejavu-core); Pillow
≥ 10.1 embeds a scalable default font, so a machine without DejaVu still renders at any
size, only in a different face.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont

from edge_agent.display.panels import DisplayError

Font = ImageFont.FreeTypeFont


FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)


@functools.cache
def _dejavu(bold: bool) -> Path | None:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    return None


@functools.lru_cache(maxsize=128)
def font(size: int, bold: bool = True) -> Font:
    """A font whose em is `size` pixels."""
    path = _dejavu(bold)
    if path is not None:
        return ImageFont.truetype(str(path), size)
    default = ImageFont.load_default(size)
    if not isinstance(default, ImageFont.FreeTypeFont):  # a Pillow built without FreeType
        raise DisplayError("Pillow has no FreeType support: install fonts-dejavu-core")
    return default
