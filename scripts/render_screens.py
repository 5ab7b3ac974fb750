#!/usr/bin/env python3
"""Render the display screenshots in docs/images/ with the appliance's own display code.

Each screen goes through `open_display` with the png kind — luma's dummy device, the same
render path a real panel takes — and is then scaled up (nearest neighbour) so the pixels
stay visible on a web page. Faces are hand-placed on frames of the demo clip (where a
detector puts them), so the pictures do not depend on the models being built.

    .venv/bin/python scripts/render_screens.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from edge_agent.config import DisplayConfig
from edge_agent.demo.samples import DEMO_CLIP, sample
from edge_agent.display import DisplayState, open_display
from edge_agent.display.care import SHIFT_OFFSETS, SHIFT_PERIOD_S
from edge_agent.types import BrokerState, BrokerStatus, FaceResult

ROOT = Path(__file__).resolve().parent.parent
# A wall-clock time at which the pixel shift is (0, 0), so shots line up with each other.
WALL = 1_700_000_000 // (SHIFT_PERIOD_S * len(SHIFT_OFFSETS)) * SHIFT_PERIOD_S * len(SHIFT_OFFSETS)
OLED = DisplayConfig(kind="png", width=128, height=64, color=False)
LCD = DisplayConfig(kind="png", width=240, height=240, color=True)
LCD_WIDE = DisplayConfig(kind="png", width=320, height=240, color=True)


def face(
    track: int, box: tuple[float, float, float, float], emotion: str | None, age: float, gender: str
) -> FaceResult:
    return FaceResult(track, box, 0.97, emotion, None, age, gender, 0.9)


def clip_frame(index: int) -> np.ndarray:
    """One frame of the Pexels demo clip (free to use and modify under the Pexels licence;
    the other samples' licences are unknown, so no picture of theirs is committed)."""
    capture = cv2.VideoCapture(str(sample(DEMO_CLIP)))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise SystemExit(f"cannot read frame {index} of {DEMO_CLIP}")
    return frame


def smiling() -> tuple[np.ndarray, list[FaceResult]]:
    return clip_frame(314), [face(1, (352, 84, 204, 236), "happy", 29, "female")]


def pensive() -> tuple[np.ndarray, list[FaceResult]]:
    return clip_frame(0), [face(1, (338, 64, 206, 236), "sad", 31, "female")]


def state(
    faces: list[FaceResult], frame: np.ndarray | None = None, **changes: object
) -> DisplayState:
    base = DisplayState(
        faces=faces,
        frame=frame,
        fps=14.8,
        broker=BrokerStatus(BrokerState.CONNECTED),
        camera="ok",
        faults=[],
        ip="192.168.1.23",
        wall=WALL,
    )
    return replace(base, **changes)


def shoot(config: DisplayConfig, shown: DisplayState, out: Path, scale: int) -> Path:
    """Show `shown` on a png panel and save it scaled up by `scale`."""
    with tempfile.TemporaryDirectory() as folder:
        panel = replace(config, path=str(Path(folder) / "panel.png"))
        display = open_display(panel)
        assert display is not None
        display.update(shown)
        display.tick()
        image = Image.open(panel.path).convert("RGB")
    image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST).save(out)
    return out


def emotions_sheet(out: Path, scale: int) -> Path:
    """Every emotion on the 128x64 OLED, in a grid."""
    _, (one,) = smiling()
    tiles = []
    for emotion in ("happy", "neutral", "sad", "angry", "surprise", "fear", "disgust"):
        with tempfile.TemporaryDirectory() as folder:
            panel = replace(OLED, path=str(Path(folder) / "panel.png"))
            display = open_display(panel)
            assert display is not None
            tiles.append(display.render(state([replace(one, emotion=emotion)])).convert("RGB"))
    gap, columns = 4, 4
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (128 + gap) - gap, rows * (64 + gap) - gap), (60, 60, 60))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * (128 + gap), (index // columns) * (64 + gap)))
    sheet.resize((sheet.width * scale, sheet.height * scale), Image.Resampling.NEAREST).save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frame, faces = smiling()
    sad_frame, sad = pensive()
    faults = state(
        [],
        None,
        fps=0.0,
        camera="lost",
        broker=BrokerStatus(BrokerState.AUTH_FAILED, "not authorised"),
    )
    written = [
        shoot(OLED, state(faces, frame), args.out / "display_oled_face.png", 4),
        shoot(OLED, state([], frame), args.out / "display_oled_idle.png", 4),
        shoot(OLED, faults, args.out / "display_fault.png", 4),
        shoot(LCD, state(faces, frame), args.out / "display_lcd_face.png", 2),
        shoot(
            LCD_WIDE,
            state(sad, sad_frame, broker=BrokerStatus(BrokerState.CONNECTING)),
            args.out / "display_lcd_wide_face.png",
            2,
        ),
        shoot(LCD, state([], sad_frame), args.out / "display_lcd_idle.png", 2),
        emotions_sheet(args.out / "display_emotions.png", 3),
    ]
    for path in written:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
