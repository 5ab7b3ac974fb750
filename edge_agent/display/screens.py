"""What the panel shows: the face, idle and fault screens, drawn through luma's canvas.

`Renderer.render(state)` is pure: the same state (including its wall-clock time, which
sets the pixel shift and night hours) gives the same image. Every text is fitted to its
box — the largest size that fits, else cut with an ellipsis — and its drawn bounds are
kept in `Renderer.texts`, so tests can check that nothing leaves the panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from edge_agent.display import glyphs
from edge_agent.display.care import NightHours, shift_offset
from edge_agent.display.fonts import Font, font
from edge_agent.display.labels import EMOTION_COLOURS, label
from edge_agent.types import BrokerState

if TYPE_CHECKING:
    from edge_agent.display import DisplayState
    from edge_agent.types import FaceResult

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)
ELLIPSIS = "…"
FAULT_PAGE_S = 4.0
MONO_INK = 96  # anti-aliased coverage that becomes a lit pixel


@dataclass(frozen=True, slots=True)
class Palette:
    background: Any
    text: Any
    muted: Any
    ok: Any
    warn: Any
    fault: Any
    colour: bool

    def emotion(self, emotion: str | None) -> Any:
        if not self.colour:
            return self.text
        blue, green, red = EMOTION_COLOURS.get(emotion, EMOTION_COLOURS[None])
        return red, green, blue


MONO = Palette(0, 255, 255, 255, 255, 255, colour=False)
COLOUR = Palette(
    (0, 0, 0),
    (255, 255, 255),
    (170, 170, 170),
    (90, 215, 120),
    (250, 190, 60),
    (235, 65, 55),
    colour=True,
)


def fault_lines(state: DisplayState) -> list[str]:
    """The problems a person at the device should know about, worst first."""
    lines = []
    if state.camera in ("lost", "stalled", "failed"):
        lines.append(f"camera {state.camera}")
    if not state.broker.healthy:
        lines.append(f"MQTT {state.broker}")
    lines.extend(state.faults)
    return lines


def main_face(faces: Sequence[FaceResult]) -> FaceResult:
    """The largest face: the one nearest the device, most likely the one looking at it."""
    return max(faces, key=lambda face: face.box[2] * face.box[3])


def _wrap(text: str, face: Font, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if face.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while face.getlength(word) > width and len(word) > 1:  # break a too-long word
            cut = len(word) - 1
            while cut > 1 and face.getlength(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def _line_height(face: Font) -> int:
    ascent, descent = face.getmetrics()
    return ascent + descent


def _ellipsize(text: str, face: Font, width: int) -> str:
    if face.getlength(text) <= width:
        return text
    while text and face.getlength(text.rstrip() + ELLIPSIS) > width:
        text = text[:-1]
    return text.rstrip() + ELLIPSIS if text else ""


class Surface:
    """One canvas being drawn: fitted text, with every text's drawn bounds recorded."""

    def __init__(self, draw: ImageDraw.ImageDraw, image: Image.Image, palette: Palette) -> None:
        self.draw, self.image, self.palette = draw, image, palette
        self.texts: list[tuple[str, Box]] = []

    def fit(
        self, text: str, width: int, height: int, largest: int, smallest: int = 9
    ) -> tuple[Font, str]:
        """The largest font (≤ largest px) at which `text` fits, else cut at the smallest."""
        largest = max(smallest, largest)
        for size in range(largest, smallest - 1, -1):
            face = font(size)
            if face.getlength(text) <= width and _line_height(face) <= height:
                return face, text
        face = font(smallest)
        return face, _ellipsize(text, face, width)

    def text(
        self,
        box: Box,
        text: str,
        fill: Any,
        *,
        largest: int,
        smallest: int = 9,
        align: str = "left",
    ) -> Box:
        """Draw one line in `box`, vertically centred; returns the drawn bounds."""
        left, top, right, bottom = box
        face, shown = self.fit(text, right - left, bottom - top, largest, smallest)
        if not shown:
            return left, top, left, top
        y = top + max(0, (bottom - top - _line_height(face)) // 2)
        width = face.getlength(shown)
        x = {"left": left, "center": left + (right - left - width) / 2, "right": right - width}[
            align
        ]
        xy = (round(x), y)
        bounds = self.draw.textbbox(xy, shown, font=face, anchor="la")
        # Ink can reach a pixel past the advance width or the line box: pull it back in.
        dx = max(0, left - round(bounds[0])) - max(0, round(bounds[2]) - right)
        dy = max(0, top - round(bounds[1])) or -max(0, round(bounds[3]) - bottom)
        if dx or dy:
            xy = (xy[0] + dx, xy[1] + dy)
            bounds = self.draw.textbbox(xy, shown, font=face, anchor="la")
        drawn = (round(bounds[0]), round(bounds[1]), round(bounds[2]), round(bounds[3]))
        if self.image.mode == "1":
            self._mono_text(xy, drawn, shown, face, fill)
        else:
            self.draw.text(xy, shown, font=face, fill=fill, anchor="la")
        self.texts.append((shown, drawn))
        return drawn

    def _mono_text(
        self, xy: tuple[int, int], bounds: Box, text: str, face: Font, fill: Any
    ) -> None:
        """1-bit text from the anti-aliased glyphs, cut at a low threshold: fuller, more
        even strokes than FreeType's own 1-bit rendering at small sizes."""
        left, top, right, bottom = bounds
        if right <= left or bottom <= top:
            return
        mask = Image.new("L", (right - left, bottom - top))
        ImageDraw.Draw(mask).text(
            (xy[0] - left, xy[1] - top), text, font=face, fill=255, anchor="la"
        )
        self.image.paste(
            fill, (left, top), mask.point(lambda v: 255 if v >= MONO_INK else 0, mode="1")
        )

    def wrapped(
        self, items: Sequence[str], width: int, height: int, largest: int, smallest: int
    ) -> tuple[Font, list[list[str]]] | None:
        """The largest font at which every item, word-wrapped, fits (items set apart by a
        quarter line); None if none does."""
        for size in range(max(smallest, largest), smallest - 1, -1):
            face = font(size)
            blocks = [_wrap(item, face, width) for item in items]
            step = _line_height(face)
            lines = sum(len(block) for block in blocks)
            if lines * step + (len(blocks) - 1) * (step // 4) <= height:
                return face, blocks
        return None

    def paragraphs(self, box: Box, face: Font, blocks: list[list[str]], fill: Any) -> None:
        """Draw wrapped blocks top-down; the last line that fits ends in an ellipsis when
        more was left."""
        left, top, right, bottom = box
        step = _line_height(face)
        placed: list[tuple[int, str]] = []
        y = top
        for block in blocks:
            for line in block:
                placed.append((y, line))
                y += step
            y += step // 4
        shown = [(y, line) for y, line in placed if y + step <= bottom]
        if len(shown) < len(placed) and shown:
            y, line = shown[-1]
            shown[-1] = y, _ellipsize(line + ELLIPSIS, face, right - left)
        for y, line in shown:
            self.text(
                (left, y, right, y + step),
                line,
                fill,
                largest=round(face.size),
                smallest=round(face.size),
            )

    def rows(
        self, box: Box, rows: Sequence[tuple[str, Any]], *, largest: int, smallest: int = 9
    ) -> None:
        """Lines of equal height, all at one size: the largest at which each fits."""
        left, top, right, bottom = box
        step = (bottom - top) / len(rows)
        height = int(step)
        size = min(
            round(self.fit(text, right - left, height, largest, smallest)[0].size)
            for text, _ in rows
        )
        for index, (text, colour) in enumerate(rows):
            y0 = round(top + index * step)
            self.text((left, y0, right, y0 + height), text, colour, largest=size, smallest=smallest)


def thumbnail(
    frame: np.ndarray, faces: Sequence[FaceResult], width: int, height: int
) -> Image.Image:
    """The frame scaled to fit (width, height), with each face's box and label."""
    frame_h, frame_w = frame.shape[:2]
    scale = min(width / frame_w, height / frame_h)
    size = max(1, round(frame_w * scale)), max(1, round(frame_h * scale))
    # Shrunk first (box filter, as area averaging), then turned from BGR to RGB: only the
    # small picture pays for the channel swap.
    small = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX))
    image = Image.fromarray(small[..., ::-1] if small.ndim == 3 else small).convert("RGB")
    draw = ImageDraw.Draw(image)
    face_font = font(max(9, min(16, size[1] // 11)))
    line = max(1, round(min(size) / 90))
    main = main_face(faces) if faces else None
    boxes = {id(face): tuple(round(v * scale) for v in face.box) for face in faces}
    taken: list[Box] = []  # labels placed so far
    for face in sorted(faces, key=lambda f: f is not main):  # the main face labelled first
        x, y, w, h = boxes[id(face)]
        others = [
            (bx, by, bx + bw, by + bh) for key, (bx, by, bw, bh) in boxes.items() if key != id(face)
        ]
        blue, green, red = EMOTION_COLOURS.get(face.emotion, EMOTION_COLOURS[None])
        colour = (red, green, blue)
        width = line + 1 if face is main and len(faces) > 1 else line
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=width)
        text = _ellipsize(label(face), face_font, size[0] - 4)
        text_w, text_h = round(face_font.getlength(text)) + 4, _line_height(face_font) + 1
        tx = min(max(0, x), size[0] - text_w)
        for ty in (y - text_h, y + h + 1):  # above the box, else below it
            spot = (tx, ty, tx + text_w, ty + text_h)
            if (
                ty < 0
                or ty + text_h > size[1]
                or any(_overlap(spot, box) for box in taken + others)
            ):
                continue
            taken.append(spot)
            draw.rectangle([tx, ty, tx + text_w - 1, ty + text_h - 1], fill=colour)
            draw.text((tx + 2, ty), text, font=face_font, fill=(0, 0, 0), anchor="la")
            break  # no free spot: the box alone, covering no other face
    return image


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class Renderer:
    """Draws a DisplayState for one panel size and colour model."""

    def __init__(
        self,
        width: int,
        height: int,
        *,
        colour: bool,
        shift: bool = True,
        night: NightHours | None = None,
    ) -> None:
        from luma.core.device import dummy

        self.size = (width, height)
        self.colour = colour
        self.palette = COLOUR if colour else MONO
        self.shift, self.night = shift, night
        self.margin = 1 if min(width, height) < 96 else 4
        # A luma pseudo-device of the panel's (rotated) size: canvas → display → .image.
        self._surface = dummy(width=width, height=height, mode="RGB" if colour else "1")
        self.texts: list[tuple[str, Box]] = []

    def is_night(self, wall: float) -> bool:
        return self.night is not None and self.night.contains(wall)

    def render(self, state: DisplayState) -> Image.Image:
        from luma.core.render import canvas

        paper = canvas(self._surface)
        with paper as draw:
            surface = Surface(draw, paper.image, self.palette)
            if not self.is_night(state.wall):
                width, height = self.size
                dx, dy = shift_offset(state.wall, self.shift)
                m = self.margin
                box = (m + dx, m + dy, width - m + dx, height - m + dy)
                faults = fault_lines(state)
                if state.faces:
                    self._faces(surface, box, state, faults)
                elif faults:
                    self._fault(surface, box, faults, state.wall)
                else:
                    self._idle(surface, box, state)
        self.texts = surface.texts
        return self._surface.image.copy()

    # -- layout -------------------------------------------------------------------------

    def _split(self, surface: Surface, box: Box, state: DisplayState) -> Box:
        """Paste the live thumbnail (colour panels) and return the box left for text."""
        if not self.colour or state.frame is None:
            return box
        left, top, right, bottom = box
        width, height = right - left, bottom - top
        gap = max(2, width // 40)
        frame_h, frame_w = state.frame.shape[:2]
        side_w, top_h = round(width * 0.58), round(height * 0.58)
        side = min(side_w / frame_w, height / frame_h)  # picture left, text right
        above = min(width / frame_w, top_h / frame_h)  # picture on top, text below
        if width >= 1.25 * height and side > above:
            thumb = (left, top, left + side_w, bottom)
            rest = (thumb[2] + gap, top, right, bottom)
        else:
            thumb = (left, top, right, top + top_h)
            rest = (left, thumb[3] + gap, right, bottom)
        picture = thumbnail(state.frame, state.faces, thumb[2] - thumb[0], thumb[3] - thumb[1])
        x = thumb[0] + (thumb[2] - thumb[0] - picture.width) // 2
        y = thumb[1] + (thumb[3] - thumb[1] - picture.height) // 2
        surface.image.paste(picture, (x, y))
        return rest

    def _faces(self, surface: Surface, box: Box, state: DisplayState, faults: list[str]) -> None:
        palette = self.palette
        face = main_face(state.faces)
        left, top, right, bottom = self._split(surface, box, state)
        width, height = right - left, bottom - top
        accent = palette.emotion(face.emotion)
        word = face.emotion or "face"
        details = " ".join(
            part for part in (face.gender, None if face.age is None else f"{face.age:.0f}") if part
        )
        count = str(len(state.faces))
        if height > 0.9 * width:  # a tall column: stack everything
            icon = round(min(width * 0.62, height * 0.40))
            row = (height - icon) // 3
            x = left + (width - icon) // 2
            glyphs.emotion_face(
                surface.draw,
                (x, top, x + icon, top + icon),
                face.emotion,
                accent,
                palette.background,
            )
            y = top + icon
            surface.text(
                (left, y, right, y + row), word, accent, largest=round(row * 0.8), align="center"
            )
            surface.text(
                (left, y + row, right, y + 2 * row),
                details,
                palette.text,
                largest=round(row * 0.6),
                align="center",
            )
            self._count(
                surface, (left, y + 2 * row, right, bottom), count, bool(faults), centre=True
            )
            return
        gap = max(2, height // 24)
        icon = round(min(height * 0.64, width * 0.34))
        glyphs.emotion_face(
            surface.draw,
            (left, top, left + icon, top + icon),
            face.emotion,
            accent,
            palette.background,
        )
        surface.text(
            (left + icon + 2 * gap, top, right, top + icon),
            word,
            accent,
            largest=round(icon * 0.66),
            smallest=10,
        )
        lower = (left, top + icon + gap, right, bottom)
        used = self._count(surface, lower, count, bool(faults))
        surface.text(
            (left, lower[1], used - gap, bottom),
            details,
            palette.text,
            largest=round((bottom - lower[1]) * 0.8),
        )

    def _count(
        self, surface: Surface, row: Box, count: str, warn: bool, centre: bool = False
    ) -> int:
        """Person glyph and face count (and a warning sign while faulty), right-aligned
        in `row` or centred; returns the left edge used."""
        palette = self.palette
        left, top, right, bottom = row
        height = bottom - top
        size = max(9, round(height * 0.8))
        while True:  # the largest size at which glyphs and number fit the row
            face = font(size)
            text_w = round(face.getlength(count)) + 1
            glyph = max(4, min(round(height * 0.8), size))
            gap = max(1, size // 8)
            total = glyph + gap + text_w + (glyph + 2 * gap if warn else 0)
            if size <= 9 or (_line_height(face) <= height and total <= right - left):
                break
            size -= 1
        start = left + (right - left - total) // 2 if centre else right - total
        x, y = start, top + (height - glyph) // 2
        if warn:
            glyphs.warning(
                surface.draw, (x, y, x + glyph, y + glyph), palette.fault, palette.background
            )
            x += glyph + 2 * gap
        glyphs.person(surface.draw, (x, y, x + glyph, y + glyph), palette.muted)
        x += glyph + gap
        surface.text(
            (x, top, x + text_w, bottom),
            count,
            palette.text,
            largest=round(face.size),
            smallest=round(face.size),
        )
        return start

    def _idle(self, surface: Surface, box: Box, state: DisplayState) -> None:
        palette = self.palette
        left, top, right, bottom = self._split(surface, box, state)
        if state.camera == "starting":
            first = ("camera starting", palette.warn)
        else:
            first = (f"{state.fps:.1f} fps", palette.ok)
        broker = {
            BrokerState.CONNECTED: ("MQTT connected", palette.ok),
            BrokerState.CONNECTING: ("MQTT connecting", palette.warn),
            BrokerState.DISABLED: ("MQTT off", palette.muted),
        }.get(state.broker.state, (f"MQTT {state.broker}", palette.fault))
        rows = [first, broker, (state.ip or "no network", palette.text)]
        surface.rows(
            (left, top, right, bottom), rows, largest=round((bottom - top) / len(rows) * 0.8)
        )

    def _fault(self, surface: Surface, box: Box, faults: list[str], wall: float) -> None:
        """A banner and every fault in words; when they do not all fit legibly, one at a
        time, each for a few seconds."""
        palette = self.palette
        left, top, right, bottom = box
        height = bottom - top
        bar = max(13, round(height * 0.22))
        pad = max(1, bar // 10)
        body = (left, top + bar + 2 * pad, right, bottom)
        largest = max(12, (body[3] - body[1]) // 2)
        legible = max(11, round(height * 0.07))
        title = "FAULT" if len(faults) == 1 else f"{len(faults)} FAULTS"
        fitted = surface.wrapped(faults, body[2] - body[0], body[3] - body[1], largest, legible)
        if fitted is None:
            index = int(wall // FAULT_PAGE_S) % len(faults)
            title = f"FAULT {index + 1}/{len(faults)}"
            fitted = surface.wrapped(
                [faults[index]], body[2] - body[0], body[3] - body[1], largest, 9
            )
            if fitted is None:  # still too long: as much as fits at the smallest size
                face = font(9)
                fitted = face, [_wrap(faults[index], face, body[2] - body[0])]
        surface.draw.rectangle([left, top, right - 1, top + bar - 1], fill=palette.fault)
        glyphs.warning(
            surface.draw,
            (left + 2 * pad, top + pad, left + 2 * pad + bar - 2 * pad, top + bar - pad),
            palette.background,
            palette.fault,
        )
        surface.text(
            (left + bar + 2 * pad, top, right - pad, top + bar),
            title,
            palette.background,
            largest=bar - 2,
        )
        surface.paragraphs(body, *fitted, palette.text)
