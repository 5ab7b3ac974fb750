"""Live and file frame sources for the daemon, and the capture thread that feeds the pipeline.

Sources, chosen by `[camera] source`:
- "picamera2": the Raspberry Pi camera through libcamera (imported only when used; it comes
  from Raspberry Pi OS's `python3-picamera2`, so the venv needs --system-site-packages).
  The main stream is "RGB888", which libcamera lays out as B, G, R bytes: our BGR frames.
- "/dev/videoN": a V4L2 camera (USB webcam) through OpenCV.
- "rtsp://", "http(s)://": a network camera through OpenCV's FFmpeg backend.
- a file or folder path: `capture.files`, paced at the file's own rate when `realtime`.
- "auto": picamera2 if it is installed, else the first /dev/video*.

`Capture` runs the source on its own thread and hands frames over through a one-slot
mailbox: the pipeline always takes the newest frame, and a frame it had no time for is
dropped and counted, never queued. A file read with `realtime = false` is the exception:
every frame is handed over and the capture thread waits for the pipeline. A live source
that fails is closed and reopened with a growing pause; `Capture.state` tells which. So is a
looping file (`camera.loop`) that is deleted or moved while running: "lost" until it is back
(a corrupt file still ends the run).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2

from edge_agent.capture import Frame, FrameSource
from edge_agent.capture.files import open_path
from edge_agent.config import STREAM_SCHEMES, V4L2_NAME, CameraConfig, is_v4l2_device, stream_scheme
from edge_agent.errors import EdgeAgentError, InputError

log = logging.getLogger(__name__)
# TCP for RTSP: UDP loses packets on Wi-Fi and smears the frames. Set here, at import on
# the main thread, since changing the environment beside running native threads is unsafe.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

Kind = Literal["picamera2", "v4l2", "stream", "file"]
State = Literal["starting", "ok", "stalled", "lost", "ended", "failed", "stopped"]
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
STREAM_TIMEOUT_MS = 10_000  # open and read timeouts of a network camera


class CameraLost(EdgeAgentError):
    """A live source stopped delivering; the capture thread reopens it."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: Kind
    target: str  # device path, URL, file path, or "picamera2"

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def describe(self) -> str:
        if self.kind == "stream":
            return f"stream {redact_url(self.target)}"
        return self.target if self.kind != "file" else f"file {self.target}"


def redact_url(url: str) -> str:
    """rtsp://user:secret@host/... → rtsp://user:***@host/... for logs and status."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def picamera2_available() -> bool:
    """picamera2 is installed and libcamera sees a camera. install.sh puts picamera2 on
    every Pi, so a Pi with only a USB webcam must fall through to /dev/video*."""
    if importlib.util.find_spec("picamera2") is None:
        return False
    try:
        from picamera2 import Picamera2

        return bool(Picamera2.global_camera_info())
    except Exception as error:  # a broken install: report it, then try V4L2
        log.warning("picamera2 is installed but unusable (%s); trying /dev/video*", error)
        return False


def video_devices(dev: Path = Path("/dev")) -> list[Path]:
    """/dev/video* in numeric order (video0 before video10)."""
    found = [p for p in dev.glob("video*") if V4L2_NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name[5:]))


def resolve_source(
    source: str,
    *,
    dev: Path = Path("/dev"),
    has_picamera2: Callable[[], bool] = picamera2_available,
) -> SourceSpec:
    """Which kind of source a `[camera] source` value names (nothing is opened here)."""
    if source == "auto":
        if has_picamera2():
            return SourceSpec("picamera2", "picamera2")
        devices = video_devices(dev)
        if devices:
            return SourceSpec("v4l2", str(devices[0]))
        raise InputError(
            "camera.source = 'auto': no camera found (picamera2 is not "
            "installed and there is no /dev/video*)"
        )
    if source == "picamera2":
        return SourceSpec("picamera2", "picamera2")
    if stream_scheme(source) in STREAM_SCHEMES:
        return SourceSpec("stream", source)
    if is_v4l2_device(source):
        return SourceSpec("v4l2", source)
    return SourceSpec("file", source)


class Picamera2Source:
    """The Pi camera's main stream as BGR frames at the configured size and rate."""

    def __init__(self, width: int, height: int, fps: float, camera_num: int = 0) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as error:
            raise InputError(
                f"camera.source = 'picamera2': cannot import picamera2 ({error}); install "
                "python3-picamera2 and create the venv with --system-site-packages"
            ) from None
        except ValueError as error:  # apt's simplejpeg is built for numpy 1, the venv has 2
            raise InputError(
                f"camera.source = 'picamera2': picamera2 does not load with this numpy "
                f"({error}); run `pip install simplejpeg` in the venv (install.sh does)"
            ) from None
        self.fps: float | None = fps
        try:
            self._camera = Picamera2(camera_num)
        except (IndexError, RuntimeError, OSError) as error:
            raise CameraLost(f"picamera2: no camera {camera_num} ({error})") from None
        try:
            configuration = self._camera.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"},
                controls={"FrameRate": fps},
                buffer_count=4,
            )
            self._camera.configure(configuration)
            self._camera.start()
        except Exception as error:
            self.close()
            raise CameraLost(f"picamera2: cannot start the camera ({error})") from None

    def frames(self) -> Iterator[Frame]:
        index, start = 0, time.monotonic()
        while True:
            try:
                image = self._camera.capture_array("main")
            except Exception as error:
                raise CameraLost(f"picamera2: capture failed ({error})") from None
            if image.ndim == 3 and image.shape[2] == 4:  # XRGB8888 if a driver insists
                image = image[:, :, :3]
            yield Frame(index, time.monotonic() - start, image, time.time())
            index += 1

    def close(self) -> None:
        camera = getattr(self, "_camera", None)
        if camera is None:
            return
        for step in (camera.stop, camera.close):
            try:
                step()
            except Exception as error:  # closing a dead camera must not mask why it died
                log.debug("picamera2 %s: %s", step.__name__, error)


class OpenCvLiveSource:
    """A V4L2 device or a network stream through OpenCV; a failed read means the camera is
    lost (the caller reopens it), never the end of the stream."""

    def __init__(self, spec: SourceSpec, config: CameraConfig) -> None:
        self.spec = spec
        if spec.kind == "v4l2":
            capture = cv2.VideoCapture(spec.target, cv2.CAP_V4L2)
            if capture.isOpened():
                capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
                capture.set(cv2.CAP_PROP_FPS, config.fps)
                capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            capture = cv2.VideoCapture(
                spec.target,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    STREAM_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    STREAM_TIMEOUT_MS,
                ],
            )
        if not capture.isOpened():
            capture.release()
            raise CameraLost(f"cannot open {spec.describe()}")
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = fps if fps and 0.1 <= fps <= 1000 else None

    def frames(self) -> Iterator[Frame]:
        index, start = 0, time.monotonic()
        while True:
            ok, image = self._capture.read()
            if not ok or image is None:
                raise CameraLost(f"{self.spec.describe()} stopped delivering frames")
            yield Frame(index, time.monotonic() - start, image, time.time())
            index += 1

    def close(self) -> None:
        self._capture.release()


def open_source(spec: SourceSpec, config: CameraConfig) -> FrameSource:
    """Open one source; a live one that is absent raises CameraLost, a bad file InputError."""
    if spec.kind == "picamera2":
        return Picamera2Source(config.width, config.height, config.fps)
    if spec.kind in ("v4l2", "stream"):
        return OpenCvLiveSource(spec, config)
    return open_path(Path(spec.target), loop=config.loop, max_pixels=config.max_pixels)


class Mailbox:
    """One slot between the capture thread and the pipeline.

    `put` replaces an untaken frame and counts it as dropped; with `lossless` it waits for
    the slot to be taken instead, so a file read at full speed is decoded one frame ahead
    while the pipeline works (docs/performance.md: a sixth more frames a second in bench
    than decoding on demand).
    `take` returns the newest frame, or None on timeout. A lossless frame's latency clock
    (`read_at`) starts when it is taken: a file has no moment of capture, and its wait in
    the slot is the pipeline being busy with the frame before.
    """

    def __init__(self, *, lossless: bool = False) -> None:
        self.lossless = lossless
        self.dropped = 0
        self.delivered = 0
        self.closed = False
        self._frame: Frame | None = None
        self._condition = threading.Condition()

    def _wait_empty(self, stop: threading.Event | None) -> bool:
        """With the lock held: wait for a free slot; False if closed or stopped instead."""
        while self._frame is not None and not self.closed and not (stop and stop.is_set()):
            self._condition.wait(0.1)
        return not self.closed and not (stop and stop.is_set())

    def put(self, frame: Frame, stop: threading.Event | None = None) -> bool:
        with self._condition:
            if self.lossless and not self._wait_empty(stop):
                return False
            if self.closed:
                return False
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.delivered += 1
            self._condition.notify_all()
            return True

    def take(self, timeout: float | None = None) -> Frame | None:
        with self._condition:
            if self._frame is None and not self.closed:
                self._condition.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None and self.lossless:
                frame.read_at = time.monotonic()
            self._condition.notify_all()
            return frame

    def close(self) -> None:
        """No more frames will come; a waiting `take` returns what is left, then None."""
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    @property
    def drained(self) -> bool:
        with self._condition:
            return self.closed and self._frame is None


class Capture:
    """One source on its own thread, feeding a Mailbox; reopens a lost live camera."""

    def __init__(
        self,
        config: CameraConfig,
        *,
        opener: Callable[[SourceSpec, CameraConfig], FrameSource] = open_source,
        spec: SourceSpec | None = None,
    ) -> None:
        self.config = config
        self.spec = spec or resolve_source(config.source)
        self.opener = opener
        self.paced = self.spec.kind == "file" and config.realtime
        self.mailbox = Mailbox(lossless=self.spec.kind == "file" and not config.realtime)
        self.error: str | None = None
        self.failure: BaseException | None = None  # what ended a file source early
        self.reopens = 0
        self.decode_s = 0.0  # time spent reading and decoding frames, for `bench`
        self.last_frame_at: float | None = None  # monotonic
        self._state: State = "starting"
        self._source: FrameSource | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._t0 = time.monotonic()
        self._count = 0
        self._backoff = BACKOFF_MIN_S
        self._t_offset = 0.0  # added to a file's own clock after it was lost and reopened
        self._last_t = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Open a file source now, so a missing or corrupt file fails the command at once;
        a live camera is opened (and retried) on the capture thread."""
        if not self.spec.live:
            self._source = self.opener(self.spec, self.config)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self.mailbox.close()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._close_source()
        if self._state not in ("ended", "failed"):
            self._state = "stopped"

    @property
    def fps(self) -> float | None:
        source = self._source
        return source.fps if source is not None else None

    @property
    def dropped(self) -> int:
        return self.mailbox.dropped

    @property
    def state(self) -> State:
        """ "stalled" is an open source whose last frame is older than 5 frame times
        (at least 2 s)."""
        if self._state == "ok" and self.last_frame_at is not None:
            fps = self.fps or self.config.fps
            if time.monotonic() - self.last_frame_at > max(2.0, 5.0 / fps):
                return "stalled"
        return self._state

    def take(self, timeout: float | None = None) -> Frame | None:
        return self.mailbox.take(timeout)

    def clock(self) -> float:
        """Source time now, on the clock live frames are stamped with."""
        return time.monotonic() - self._t0

    @property
    def ended(self) -> bool:
        """A finite source has delivered its last frame and it was taken."""
        return self.mailbox.drained

    # -- the thread -------------------------------------------------------------------------
    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception as error:
                log.debug("closing %s: %s", self.spec.describe(), error)

    def _pause(self) -> None:
        """Wait before the next reopen, twice as long each time, up to BACKOFF_MAX_S."""
        self._stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _lost(self, message: str) -> None:
        if self._state != "lost" or message != self.error:
            log.warning(
                "camera %s: %s; reopening in %.1f s", self.spec.describe(), message, self._backoff
            )
        self._state, self.error = "lost", message

    def _vanished(self) -> bool:
        """A looping file source whose file (or folder) is gone: a lost camera, not the end
        (it may be replaced, say by a copy in progress); a corrupt file still fails."""
        return self.spec.kind == "file" and self.config.loop and not Path(self.spec.target).exists()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._source is None:
                try:
                    self._source = self.opener(self.spec, self.config)
                except (CameraLost, OSError, RuntimeError, cv2.error) as error:
                    self._lost(str(error))
                    self._pause()
                    continue
                except EdgeAgentError as error:
                    if not self._vanished():
                        self._fail(error)
                        return
                    self._lost(str(error))
                    self._pause()
                    continue
                self.reopens += 1
                if not self.spec.live:  # the file's clock goes on from where it stopped
                    self._t_offset = self._last_t + 1.0 / (self._source.fps or self.config.fps)
            try:
                self._pump(self._source)
            except (CameraLost, OSError, RuntimeError, cv2.error, EdgeAgentError) as error:
                if not self.spec.live and not self._vanished():
                    self._fail(error)
                    return
                self._close_source()
                self._lost(str(error))
                self._pause()
                continue
            if self._stop.is_set():
                return
            if self.spec.live or self._vanished():  # a live iterator that ends: lost
                self._close_source()
                self._lost("stream ended" if self.spec.live else f"{self.spec.target}: gone")
                self._pause()
                continue
            self._state = "ended"
            self.mailbox.close()
            return

    def _fail(self, error: BaseException) -> None:
        log.error("camera %s failed: %s", self.spec.describe(), error)
        self._state, self.error, self.failure = "failed", str(error), error
        self.mailbox.close()

    def _pump(self, source: FrameSource) -> None:
        """Move frames from one open source to the mailbox until it ends, fails or we stop."""
        fps = source.fps
        pace_t0: float | None = None
        first_t = 0.0
        frames = source.frames()
        while True:
            decoding = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                return
            self.decode_s += time.perf_counter() - decoding
            if self._stop.is_set():
                return
            if self.paced and fps:
                now = time.monotonic()
                if pace_t0 is None:
                    pace_t0, first_t = now, frame.t
                delay = pace_t0 + (frame.t - first_t) - now
                if delay > 0:
                    if self._stop.wait(delay):
                        return
                elif delay < -1.0:  # decoding fell far behind: re-anchor instead of bursting
                    pace_t0, first_t = now, frame.t
            frame.index = self._count
            if self.spec.live:  # one clock across reopens, so tracks never see time go back
                frame.t = time.monotonic() - self._t0
            else:
                frame.t += self._t_offset
                self._last_t = frame.t
            frame.wall = time.time()
            frame.read_at = time.monotonic()
            self._count += 1
            self.last_frame_at = time.monotonic()
            if self._state != "ok":
                if self._state == "lost":
                    log.info("camera %s is delivering again", self.spec.describe())
                self._state, self.error = "ok", None
                self._backoff = BACKOFF_MIN_S
            if not self.mailbox.put(frame, self._stop):
                return
