"""`eval --report DIR`: the confusion matrix and calibration curve as PNGs, and a summary.

Drawn with Pillow (already a dependency for the panels), so the report needs no plotting
library on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from edge_agent.display.fonts import font
from edge_agent.errors import UsageError
from edge_agent.types import EMOTIONS
from edge_agent.vision.metrics import NO_FACE

CELL = 64
MARGIN = 110
WHITE, BLACK, GREY = (255, 255, 255), (20, 20, 20), (150, 150, 150)


def confusion_png(confusion: dict[str, dict[str, int]], path: Path) -> None:
    """Rows: the labelled class; columns: what was said. Each row shaded by its share."""
    rows = list(confusion)
    columns = [*EMOTIONS, NO_FACE]
    width, height = MARGIN + CELL * len(columns) + 20, MARGIN + CELL * len(rows) + 40
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    small, label = font(12, bold=False), font(14)
    draw.text((MARGIN, 8), "said →", fill=BLACK, font=label)
    draw.text((8, MARGIN - 24), "labelled ↓", fill=BLACK, font=label)
    for c, name in enumerate(columns):
        draw.text((MARGIN + c * CELL + 4, MARGIN - 40), name[:8], fill=BLACK, font=small)
    for r, name in enumerate(rows):
        total = max(1, sum(confusion[name].values()))
        y = MARGIN + r * CELL
        draw.text((8, y + CELL // 2 - 8), name, fill=BLACK, font=label)
        for c, column in enumerate(columns):
            count = confusion[name][column]
            share = count / total
            shade = round(255 * (1 - share))
            fill = (shade, shade, 255) if column == name else (255, shade, shade)
            x = MARGIN + c * CELL
            draw.rectangle((x, y, x + CELL - 2, y + CELL - 2), fill=fill, outline=GREY)
            ink = WHITE if share > 0.55 else BLACK
            draw.text((x + 6, y + 8), str(count), fill=ink, font=label)
            draw.text((x + 6, y + 34), f"{share:.0%}", fill=ink, font=small)
    image.save(path)


def calibration_png(bands: list[dict[str, float]], path: Path) -> None:
    """Accuracy against stated confidence per band; the diagonal is perfect calibration."""
    size, pad = 400, 50
    image = Image.new("RGB", (size + 2 * pad, size + 2 * pad), WHITE)
    draw = ImageDraw.Draw(image)
    small = font(12, bold=False)

    def point(x: float, y: float) -> tuple[float, float]:
        return pad + x * size, pad + (1 - y) * size

    draw.rectangle((pad, pad, pad + size, pad + size), outline=GREY)
    draw.line([point(0, 0), point(1, 1)], fill=GREY, width=1)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        draw.text((point(tick, 0)[0] - 10, pad + size + 6), f"{tick:.2f}", fill=BLACK, font=small)
        draw.text((8, point(0, tick)[1] - 6), f"{tick:.2f}", fill=BLACK, font=small)
    draw.text((pad, 12), "accuracy (y) by top-class probability (x)", fill=BLACK, font=small)
    total = max(1, sum(band["count"] for band in bands))
    points = [point(band["confidence"], band["accuracy"]) for band in bands]
    if len(points) > 1:
        draw.line(points, fill=(40, 90, 200), width=3)
    for band, (x, y) in zip(bands, points, strict=True):
        radius = 4 + 16 * (band["count"] / total) ** 0.5
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(40, 90, 200))
    image.save(path)


def markdown(summary: dict[str, Any], labels: Path) -> str:
    lines = [
        "# edge-agent eval",
        "",
        f"Labels: `{labels}`. Images: {summary['images']}; a face found on "
        f"{summary['faces_found']} ({summary['faces_found_rate']:.1%}).",
        "",
    ]
    if "balanced_accuracy" in summary:
        lines += [
            "| measure | value |",
            "|---|---|",
            f"| balanced accuracy (top class) | {summary['balanced_accuracy']:.3f} |",
            f"| accuracy (top class) | {summary['accuracy']:.3f} |",
            f"| stated (not uncertain) | {1 - summary['uncertain_rate']:.1%} |",
            f"| right when stated | {summary['stated_accuracy']:.1%} |",
            f"| expected calibration error | {summary['ece']:.3f} |",
            "",
            "| class | recall |",
            "|---|---|",
            *(f"| {label} | {value:.2f} |" for label, value in summary["per_class"].items()),
            "",
            "![confusion matrix](confusion.png) ![calibration](calibration.png)",
            "",
        ]
    if "detection" in summary:
        detection = summary["detection"]
        lines += [
            f"Detection at IoU ≥ {detection['iou']}: recall {detection['recall']:.3f}, "
            f"precision {detection['precision']:.3f}.",
            "",
        ]
    return "\n".join(lines)


def write_report(folder: Path, summary: dict[str, Any], labels: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--report {folder}: cannot create ({error.strerror or error})") from None
    if "confusion" in summary:
        confusion_png(summary["confusion"], folder / "confusion.png")
        calibration_png(summary["calibration"], folder / "calibration.png")
    (folder / "summary.md").write_text(markdown(summary, labels), encoding="utf-8")
    return folder
