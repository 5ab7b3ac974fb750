"""Images, videos and folders of images as frame sources.

These are what `analyze` reads and what the demo and tests replay; they take their
timestamps from the file (frame index over the stream's frame rate), so replay speed never
changes the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_agent.config import CameraConfig
from edge_agent.errors import BadMediaError, EdgeAgentError, InputError
from edge_agent.types import Frame

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})
FOLDER_FPS = 1.0  # a folder of stills is read as one photo a second
DEFAULT_VIDEO_FPS = 30.0
# The most pixels one decoded image or video frame may have (camera.max_pixels): 40 MP is a
# 24 MP photo with room to spare and takes 120 MB as BGR; a 30000x30000 PNG of 1 MB on disk
# would take 2.7 GB. Larger inputs are refused from their header, before decoding.
DEFAULT_MAX_PIXELS = CameraConfig().max_pixels


def _check_pixels(path: Path, width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise BadMediaError(
            f"{path}: {what} of {width}x{height} ({width * height / 1e6:.1f} megapixels) is "
            f"larger than camera.max_pixels ({max_pixels / 1e6:g} megapixels); not decoded"
        )


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the image's header alone (Pillow reads no pixel data here);
    None if Pillow does not know the format (OpenCV may still decode it)."""
    previous = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our own budget decides, not Pillow's bomb warning
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if size == 0:
        raise BadMediaError(f"{path}: file is empty (0 bytes)")


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any still OpenCV decodes, as 3-channel BGR (grey and alpha images are converted);
    one over `max_pixels` is refused from its header, before any pixel is decoded."""
    _check_file(path)
    size = image_size(path)
    if size is not None:
        _check_pixels(path, size[0], size[1], max_pixels, "an image")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise BadMediaError(f"{path}: not a readable image (corrupt or not an image file)")
    _check_pixels(path, image.shape[1], image.shape[0], max_pixels, "an image")
    return image


class ImageSource:
    """One still image as a one-frame stream."""

    fps: float | None = None

    def __init__(self, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.path = path
        self._image = read_image(path, max_pixels)

    def frames(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self._image)

    def close(self) -> None:
        pass


class FolderSource:
    """The images of a folder in name order, one a second of source time."""

    def __init__(
        self, path: Path, *, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self.max_pixels = max_pixels
        entries = sorted(path.iterdir())
        self.files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()]
        # what a reader of the folder should hear about: it holds media this source skips
        self.skipped: list[tuple[Path, str]] = [
            (p, "a folder (subfolders are not read)")
            if p.is_dir()
            else (p, "a video (only the images of a folder are read)")
            for p in entries
            if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES)
        ]
        if not self.files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise BadMediaError(f"{path}: folder holds no images ({suffixes})")
        self.fps: float | None = FOLDER_FPS
        self.loop = loop

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            for file in self.files:
                yield Frame(index, index / FOLDER_FPS, read_image(file, self.max_pixels))
                index += 1
            if not self.loop:
                return

    def stills(self) -> Iterator[tuple[Path, Frame | EdgeAgentError]]:
        """Each image with its frame, or with why it cannot be read, so that one bad photo
        does not end a folder (`frames()` stops at it: a stream cannot skip)."""
        for index, file in enumerate(self.files):
            try:
                yield file, Frame(index, index / FOLDER_FPS, read_image(file, self.max_pixels))
            except EdgeAgentError as error:
                yield file, error

    def close(self) -> None:
        pass


class VideoSource:
    """A video file through OpenCV's FFmpeg backend; `loop` replays it with rising time.
    A video whose frames are larger than `max_pixels` is refused (not downscaled): the
    decoder would allocate the full frame before we could shrink it."""

    def __init__(
        self, path: Path, *, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        _check_file(path)
        self.path = path
        self.loop = loop
        self._capture = self._open()
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_pixels:
            self._capture.release()
            _check_pixels(path, width, height, max_pixels, "a video frame")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = fps if fps and 1.0 <= fps <= 1000.0 else DEFAULT_VIDEO_FPS
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise BadMediaError(f"{self.path}: not a readable video (no frame could be decoded)")
        if first.shape[0] * first.shape[1] > max_pixels:
            self._capture.release()
            _check_pixels(path, first.shape[1], first.shape[0], max_pixels, "a video frame")
        self._first: np.ndarray | None = first

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise BadMediaError(f"{self.path}: not a readable image or video")
        return capture

    def frames(self) -> Iterator[Frame]:
        """Frames stamped with the stream's own presentation time: phone clips often have
        a variable frame rate, where index / fps drifts by a third of a second."""
        assert self.fps is not None
        step = 1.0 / self.fps
        index, offset, t = 0, 0.0, -step
        while True:
            if self._first is not None:
                image, self._first = self._first, None
            else:
                ok, image = self._capture.read()
                if not ok:
                    if not self.loop or index == 0:
                        return
                    self._capture.release()
                    self._capture = self._open()
                    offset = t + step  # the next pass continues the clock
                    continue
            stamp = offset + self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            t = stamp if stamp > t else t + step  # never backwards, whatever the container
            yield Frame(index, t, image)
            index += 1

    def close(self) -> None:
        self._capture.release()


def open_path(
    path: Path, *, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageSource | FolderSource | VideoSource:
    """The right source for a path: a folder, a still (by content), or a video."""
    if path.is_dir():
        return FolderSource(path, loop=loop, max_pixels=max_pixels)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, max_pixels)
    return VideoSource(path, loop=loop, max_pixels=max_pixels)
