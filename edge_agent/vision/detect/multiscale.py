"""Faces at every distance from the short-range BlazeFace: a scale pyramid, spread over frames.

The short-range model sees faces of about 16-100 px in its 128 px input, so a 640x480 room
shrunk to 128 px loses every face under ~80 px, and a face that fills the frame is fine.
Running the same model on overlapping tiles brings small faces into its range (measured on
a multi-scale 640x480 set: recall 0.11 → 0.94 at precision 0.99, 5/5 on a group photo
where one pass found none and merged two people into one box):

- the whole frame, keeping boxes of at least WHOLE_MIN_PX;
- the whole frame from afar: shrunk to a third in the input (DISTANT), so a face that fills
  the frame is at most a third of the input. The int8 build scores a face that fills its
  input far lower than float does: it found 90.4 % of the labelled close-ups without this
  job and 96.7 % with it (float 97.2 → 97.6 %). Its boxes must reach
  `score_threshold`: at SCAN_THRESHOLD it also read hair above a pasted face as a
  196 px face (0.53), and a box that large gets no second look;
- tiles of MID_TILE px (30 % overlap), keeping boxes of MID_RANGE_PX;
- tiles of SMALL_TILE px (30 % overlap), keeping boxes up to SMALL_MAX_PX;
- tiles of ENLARGED_TILE px enlarged to the model's 128 px, keeping boxes up to
  ENLARGED_MAX_PX: a 20 px face is then 32 px to the model, which finds it far more often
  (centred regions of 96 px find 92 % of the set's <24 px faces at 0.5, of 128 px 79 %).
  The set's recall goes 0.878 → 0.932 with tiles of 96 px and to 0.955 with 80 px (0.955
  and 0.959 on sets built with seeds 1 and 2, precision 0.986-1.000); 64 px tiles as well
  gained under 0.01 for twice the runs. Enlarged tiles alone, with no size limit, also
  read clouds as 30-40 px faces, hence the limit and the 1:1 tiles kept (at 80 px a limit
  of 32 also took a 34 px shoulder in the group photo for a face; 30 did not, and found
  as many on the sets);

each pass at SCAN_THRESHOLD, then one weighted NMS over all passes. A box narrower than
VERIFY_BELOW of the frame's short side gets a second look: the model on a square crop
`AROUND` times its size must find it again at `score_threshold`, which drops text and
textures a coarse pass mistook for a face and any box spanning two faces.

A photo gets the whole pyramid at once (`scan`: each job once, 142 model runs at 640x480
plus one per small box, ~147 on the set's frames, about 0.26 s here). A video cannot
afford that per frame, so `detect` runs the pyramid's jobs SCANS_PER_FRAME at a time, a
coarse, a 1:1 and an enlarged one in turn, the distant look taking the whole frame's turn
every other round (a cycle of 297 frames, ~10 s at 30 fps; on the
set, 90 % of faces over 96 px are found within 6 frames, of 24-48 px within 3 s and under
24 px within 8 s), and re-finds every known face each frame on a crop `AROUND` times its
size: 1 + faces runs a frame at the default, against 1 for the single pass. On the set's
frames, each held still for a cycle, the stream's recall went 0.878 → 0.950 (seed 1:
0.864 → 0.955) when the enlarged tiles joined its cycle, precision 0.995 and 0.986. The
price is time: coarse and 1:1 jobs alternating found 90 % of seed 1's faces of 48-96 px
within 12 frames, 18 now.
Both drop a box holding the centres of two smaller faces found, and then a box inside a
face that is the size of an eye or a cheek of it (`_without_nested`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.types import Detection
from edge_agent.vision.boxes import iou
from edge_agent.vision.detect.blazeface import (
    BlazeFaceDetector,
    Candidates,
    Region,
    concatenate,
    to_detections,
)

SCAN_THRESHOLD = 0.5  # each pass; the second look asks for `score_threshold`
CHECK_THRESHOLD = 0.5  # a known face is kept while a crop around it scores this
WHOLE_MIN_PX = 140.0
MID_TILE, MID_RANGE_PX = 320, (40.0, 200.0)
SMALL_TILE, SMALL_MAX_PX = 128, 60.0
ENLARGED_TILE, ENLARGED_MAX_PX = 80, 30.0  # the smallest faces, enlarged to 128
TILE_OVERLAP = 0.3
DISTANT = 3.0  # the whole frame is also read shrunk to a third of the input
VERIFY_BELOW = 0.4  # of the frame's short side
VERIFY_IOU = 0.4
PART_OF_FACE = 0.18  # of a face's width: a box inside it this wide is an eye or a cheek
FOLLOW_IOU = 0.3  # a re-found face must overlap its last box this much
MIN_CROP_PX = 48.0
# A known face is looked for again in a square crop this many times its size. The int8
# build scores a face that fills much of its input far lower than the float model does
# (it finds 90 % of close-ups against 97 %), so it gets the face at a quarter of the input
# instead of half: on the Pexels and single-face clips a 2x crop kept the face on 14 % and
# 18 % of frames in int8 and 4x on 100 %; a float model at 4x holds on to false faces
# longer (no_face.mp4: 0 % → 12 % of frames), so it stays at 2x.
AROUND = {"float": 2.0, "int8": 4.0}
FRAME_LIMIT = (640, 480)  # larger pictures are shrunk to fit before the pyramid


@dataclass(frozen=True, slots=True)
class Job:
    """One model run of the pyramid: a region, and the box widths it answers for."""

    region: Region | None  # None: the whole frame
    min_px: float
    max_px: float
    strict: bool = False  # its boxes must reach `score_threshold`, not SCAN_THRESHOLD


def tiles(width: int, height: int, tile: int, overlap: float) -> list[Region]:
    """Square tiles of side `tile` covering the frame, neighbours overlapping by at least
    `overlap` of a tile."""

    def starts(total: int) -> list[float]:
        if tile >= total:
            return [0.0]
        count = math.ceil((total - tile) / (tile * (1 - overlap))) + 1
        return [round(i * (total - tile) / (count - 1)) for i in range(count)]

    return [(x, y, float(tile), float(tile)) for y in starts(height) for x in starts(width)]


def pyramid(width: int, height: int, photo: bool = False) -> list[Job]:
    """The pyramid's jobs for one frame size.

    A photo's list has each job once. A stream's is one cycle of frames: coarse, 1:1 and
    enlarged jobs in turn, each kind cycling through its own jobs, so the few coarse ones
    come round every few frames (near faces are found at once), the 1:1 tiles within a
    cycle of theirs, and the many enlarged tiles, for the smallest faces, over the whole."""
    whole = Job(None, WHOLE_MIN_PX, math.inf)
    side_w, side_h = DISTANT * width, DISTANT * height
    distant = Job(
        ((width - side_w) / 2, (height - side_h) / 2, side_w, side_h),
        WHOLE_MIN_PX,
        math.inf,
        strict=True,
    )
    mid = [Job(r, *MID_RANGE_PX) for r in tiles(width, height, MID_TILE, TILE_OVERLAP)]
    fine = [Job(r, 0.0, SMALL_MAX_PX) for r in tiles(width, height, SMALL_TILE, TILE_OVERLAP)]
    enlarged = [
        Job(r, 0.0, ENLARGED_MAX_PX) for r in tiles(width, height, ENLARGED_TILE, TILE_OVERLAP)
    ]
    if photo:
        return [whole, distant, *mid, *fine, *enlarged]
    coarse = [whole, *mid]

    def coarse_turn(index: int) -> Job:
        # Every other round of the coarse jobs reads the whole frame from afar instead of
        # near, so the mid tiles keep their turns: as a coarse job of its own the distant
        # look moved every tile's turn, and one then read the title lettering of
        # noface_face.mov as a face. The whole frame comes round every 42 frames, not 21.
        job = coarse[index % len(coarse)]
        return distant if job is whole and index // len(coarse) % 2 else job

    turns = max(len(coarse), len(fine), len(enlarged))
    return [
        job
        for index in range(turns)
        for job in (coarse_turn(index), fine[index % len(fine)], enlarged[index % len(enlarged)])
    ]


def _around(face: Detection, scale: float) -> Region:
    x, y, w, h = face.box
    side = max(MIN_CROP_PX, scale * max(w, h))
    return (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)


class MultiScaleDetector:
    """The short-range model as a scale pyramid; `detect` remembers faces between frames."""

    def __init__(self, single: BlazeFaceDetector, *, scans_per_frame: int = 1) -> None:
        self.single = single
        self.runs_on = single.runs_on
        self.variant = single.variant
        self.score_threshold = single.score_threshold  # may change between frames (SIGHUP)
        self.min_face_size = single.min_face_size
        self.scans_per_frame = scans_per_frame
        self._crop_scale = AROUND[single.variant]  # of the build that runs
        self._known: list[Detection] = []
        self._jobs: list[Job] = []
        self._size: tuple[int, int] | None = None
        self._cursor = 0

    # -- one job ----------------------------------------------------------------------------
    def _run(self, image: np.ndarray, job: Job) -> Candidates:
        threshold = self.score_threshold if job.strict else SCAN_THRESHOLD
        corners, points, scores = self.single.candidates(image, job.region, threshold)
        widths = corners[:, 2] - corners[:, 0]
        keep = (widths >= job.min_px) & (widths <= job.max_px)
        return corners[keep], points[keep], scores[keep]

    def _find_near(
        self, image: np.ndarray, face: Detection, threshold: float, min_iou: float = FOLLOW_IOU
    ) -> Detection | None:
        """The face again, in a crop around it, if it overlaps its box by `min_iou`."""
        height, width = image.shape[:2]
        found = to_detections(
            self.single.candidates(image, _around(face, self._crop_scale), threshold),
            width,
            height,
            0.0,
        )
        overlap, best = max(
            ((iou(f.box, face.box), f) for f in found),
            key=lambda pair: pair[0],
            default=(0.0, None),
        )
        return best if best is not None and overlap >= min_iou else None

    def _confirmed(self, image: np.ndarray, face: Detection) -> Detection | None:
        """The second look: small boxes must be found again, at `score_threshold`."""
        if face.box[2] >= VERIFY_BELOW * min(image.shape[:2]):
            return face
        return self._find_near(image, face, self.score_threshold, VERIFY_IOU)

    # -- a photo, and a stream -----------------------------------------------------------
    def scan(self, image: np.ndarray) -> list[Detection]:
        """Every face of one picture, from the whole pyramid (no memory of other frames)."""
        small, scale = _fit(image)
        height, width = small.shape[:2]
        found = concatenate([self._run(small, job) for job in pyramid(width, height, photo=True)])
        faces = to_detections(found, width, height, 0.0)
        faces = [f for f in (self._confirmed(small, face) for face in faces) if f is not None]
        return self._report(_without_nested(faces), scale)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a frame of a stream: known faces re-found, plus the next pyramid jobs."""
        small, scale = _fit(image)
        height, width = small.shape[:2]
        if self._size != (width, height):
            self._jobs, self._size = pyramid(width, height), (width, height)
            self.forget()
        kept: list[Detection] = []
        for face in self._known:
            again = self._find_near(small, face, CHECK_THRESHOLD)
            if again is not None and all(iou(again.box, k.box) < VERIFY_IOU for k in kept):
                kept.append(again)
        runs = [
            self._jobs[(self._cursor + i) % len(self._jobs)] for i in range(self.scans_per_frame)
        ]
        self._cursor = (self._cursor + self.scans_per_frame) % len(self._jobs)
        found = concatenate([self._run(small, job) for job in runs])
        for face in to_detections(found, width, height, 0.0):
            if any(iou(face.box, k.box) >= FOLLOW_IOU for k in kept):
                continue  # a known face, already re-found above
            confirmed = self._confirmed(small, face)
            if confirmed is not None:
                kept.append(confirmed)
        self._known = kept = _without_nested(kept)
        return self._report(kept, scale)

    def forget(self) -> None:
        """No known face, and the pyramid from its first job: as a new detector starts."""
        self._known, self._cursor = [], 0

    def _report(self, faces: list[Detection], scale: float) -> list[Detection]:
        """Back to the caller's pixels, without faces under `min_face_size`, best first."""
        if scale != 1.0:
            faces = [
                Detection(
                    tuple(v / scale for v in f.box),  # type: ignore[arg-type]
                    f.score,
                    None if f.keypoints is None else f.keypoints / scale,
                )
                for f in faces
            ]
        faces = [f for f in faces if min(f.box[2], f.box[3]) >= self.min_face_size]
        return sorted(faces, key=lambda f: -f.score)


def _holds(outer: Detection, inner: Detection) -> bool:
    """Whether `inner`, at most half as wide as `outer`, has its centre inside `outer`."""
    x, y, w, h = outer.box
    ix, iy, iw, ih = inner.box
    cx, cy = ix + iw / 2, iy + ih / 2
    return iw <= w / 2 and x <= cx <= x + w and y <= cy <= y + h


def _without_nested(faces: list[Detection]) -> list[Detection]:
    """The faces without a box holding two separate faces, then without a part of a face.

    One face never holds two others: a box that does comes from a coarse pass reading a
    few small faces as one (seen on pasted heads: a 230 px box over three 20-35 px faces,
    in sky), and it goes, its faces stay. A box inside a face and at least PART_OF_FACE of
    its width is a part of it: on close-ups the 1:1 tiles read an eye or a cheek as a face
    of 0.20-0.27 of the face's width (5 of the 1,524 labelled photos), and it goes. A
    smaller box inside a larger one stays: it may be a far face under a false large box,
    which then goes as soon as a second such face is found beside it. A near face's own
    duplicate boxes are not two faces, hence the overlap test."""

    def spans(outer: Detection) -> bool:
        held = [inner for inner in faces if _holds(outer, inner)]
        return any(
            iou(a.box, b.box) < VERIFY_IOU for i, a in enumerate(held) for b in held[i + 1 :]
        )

    def part(inner: Detection, outer: Detection) -> bool:
        return _holds(outer, inner) and inner.box[2] >= PART_OF_FACE * outer.box[2]

    kept = [face for face in faces if not spans(face)]
    return [face for face in kept if not any(part(face, outer) for outer in kept)]


def _fit(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The picture shrunk to fit FRAME_LIMIT (the pyramid is laid out for a room camera's
    frame), and the scale applied."""
    height, width = image.shape[:2]
    limit_w, limit_h = FRAME_LIMIT
    if width <= limit_w and height <= limit_h:
        return image, 1.0
    scale = min(limit_w / width, limit_h / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale
