"""Small drawn icons: a face per emotion, a person (face count) and a warning sign.

Drawn with ImageDraw primitives scaled to the box, so they stay crisp in 1-bit at 32 px
and on a 240 px colour panel alike; no image assets.
"""

from __future__ import annotations

from typing import Any

from PIL import ImageDraw

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)
Ink = Any  # a colour Pillow accepts for the image mode


def _line(
    draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], fill: Ink, width: int
) -> None:
    draw.line([(round(x), round(y)) for x, y in points], fill=fill, width=width, joint="curve")


def emotion_face(
    draw: ImageDraw.ImageDraw, box: Box, emotion: str | None, fill: Ink, background: Ink
) -> None:
    """A round face whose brows, eyes and mouth say `emotion` (None: not classified)."""
    left, top, right, bottom = box
    size = min(right - left, bottom - top)
    x0 = left + (right - left - size) // 2
    y0 = top + (bottom - top - size) // 2
    width = max(1, round(size / 18))

    def at(fx: float, fy: float) -> tuple[float, float]:
        return x0 + fx * (size - 1), y0 + fy * (size - 1)

    def span(fx0: float, fy0: float, fx1: float, fy1: float) -> list[int]:
        (a, b), (c, d) = at(fx0, fy0), at(fx1, fy1)
        return [round(a), round(b), round(c), round(d)]

    draw.ellipse([x0, y0, x0 + size - 1, y0 + size - 1], outline=fill, width=width)
    eye_r = max(1.0, size * 0.065)
    eyes = (0.34, 0.40), (0.66, 0.40)

    def dot_eyes(radius: float = eye_r, fy: float = 0.40) -> None:
        for fx, _ in eyes:
            cx, cy = at(fx, fy)
            draw.ellipse(
                [round(cx - radius), round(cy - radius), round(cx + radius), round(cy + radius)],
                fill=fill,
            )

    def ring_eyes(radius: float) -> None:
        for fx, fy in eyes:
            cx, cy = at(fx, fy)
            draw.ellipse(
                [round(cx - radius), round(cy - radius), round(cx + radius), round(cy + radius)],
                outline=fill,
                width=width,
            )
            draw.point((round(cx), round(cy)), fill=fill)

    def brows(inner_fy: float, outer_fy: float) -> None:
        _line(draw, [at(0.22, outer_fy), at(0.43, inner_fy)], fill, width)
        _line(draw, [at(0.57, inner_fy), at(0.78, outer_fy)], fill, width)

    if emotion == "happy":
        dot_eyes()
        draw.chord(span(0.27, 0.44, 0.73, 0.80), 0, 180, fill=fill)
    elif emotion == "sad":
        brows(0.22, 0.29)
        dot_eyes(fy=0.42)
        draw.arc(span(0.30, 0.64, 0.70, 0.92), 200, 340, fill=fill, width=width)
    elif emotion == "angry":
        brows(0.34, 0.22)
        dot_eyes(fy=0.44)
        draw.arc(span(0.32, 0.66, 0.68, 0.90), 210, 330, fill=fill, width=width)
        _line(draw, [at(0.36, 0.70), at(0.64, 0.70)], fill, width)
    elif emotion == "surprise":
        brows(0.18, 0.20)
        ring_eyes(max(2.0, size * 0.09))
        draw.ellipse(span(0.40, 0.60, 0.60, 0.84), fill=fill)
    elif emotion == "fear":
        brows(0.18, 0.27)
        ring_eyes(max(2.0, size * 0.08))
        draw.ellipse(span(0.33, 0.64, 0.67, 0.80), fill=fill)
    elif emotion == "disgust":
        _line(draw, [at(0.24, 0.30), at(0.44, 0.34)], fill, width)
        _line(draw, [at(0.56, 0.26), at(0.78, 0.22)], fill, width)
        _line(draw, [at(0.26, 0.42), at(0.42, 0.42)], fill, width)
        dot_eyes()
        wave = [at(0.30 + 0.08 * i, 0.74 + (0.05 if i % 2 else -0.03)) for i in range(6)]
        _line(draw, wave, fill, width)
    elif emotion == "neutral":
        dot_eyes()
        _line(draw, [at(0.32, 0.72), at(0.68, 0.72)], fill, width)
    else:  # not classified yet, or emotion switched off
        dot_eyes()
        for fx in (0.36, 0.50, 0.64):
            cx, cy = at(fx, 0.72)
            r = max(0.5, width / 2)
            draw.ellipse([round(cx - r), round(cy - r), round(cx + r), round(cy + r)], fill=fill)


def person(draw: ImageDraw.ImageDraw, box: Box, fill: Ink) -> None:
    """Head and shoulders, for the face count."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    head = max(2, round(min(w, h) * 0.42))
    hx = left + (w - head) // 2
    draw.ellipse([hx, top, hx + head - 1, top + head - 1], fill=fill)
    shoulders = [
        left + round(w * 0.08),
        top + round(h * 0.52),
        right - 1 - round(w * 0.08),
        top + round(h * 0.52) + 2 * (bottom - top - round(h * 0.52)) - 1,
    ]
    draw.pieslice(shoulders, 180, 360, fill=fill)


def warning(draw: ImageDraw.ImageDraw, box: Box, fill: Ink, background: Ink) -> None:
    """A filled triangle with an exclamation mark cut out of it."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    draw.polygon([(left + w // 2, top), (right - 1, bottom - 1), (left, bottom - 1)], fill=fill)
    cx = left + w // 2
    bar = max(1, round(w / 10))
    half = bar // 2
    draw.rectangle(
        [cx - half, top + round(h * 0.32), cx - half + bar - 1, top + round(h * 0.68)],
        fill=background,
    )
    draw.rectangle(
        [cx - half, top + round(h * 0.76), cx - half + bar - 1, top + round(h * 0.76) + bar - 1],
        fill=background,
    )
