"""Camera sources and the capture thread, on real video: path selection, the newest-frame
mailbox, realtime pacing, a real HTTP MJPEG camera that stalls and reconnects, and the
picamera2 source with only the `picamera2` module itself replaced."""

from __future__ import annotations

import importlib.machinery
import sys
import time
import types
from typing import ClassVar

import numpy as np
import pytest
from helpers.camera import MjpegCamera

from edge_agent.capture.camera import (
    CameraLost,
    Capture,
    Mailbox,
    Picamera2Source,
    SourceSpec,
    picamera2_available,
    redact_url,
    resolve_source,
)
from edge_agent.capture.files import FolderSource, VideoSource
from edge_agent.config import CameraConfig
from edge_agent.errors import InputError

CLIP = "WolfgangLanger_Pexels.mp4"  # 472 frames, 23.98 fps, 640x360


def wait_until(predicate, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# -- which source a `[camera] source` names -------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("picamera2", "picamera2"),
        ("/dev/video0", "v4l2"),
        ("/dev/video12", "v4l2"),
        ("rtsp://cam.local:554/stream1", "stream"),
        ("RTSP://cam.local/s", "stream"),
        ("http://cam.local/video.mjpg", "stream"),
        ("https://cam.local/video.mjpg", "stream"),
        ("/srv/clips/door.mp4", "file"),
        ("clips", "file"),
    ],
)
def test_source_kinds(source, kind):
    spec = resolve_source(source, has_picamera2=lambda: False)
    assert (spec.kind, spec.target) == (kind, source)
    assert spec.live == (kind != "file")


def test_auto_prefers_picamera2_then_the_lowest_video_device(tmp_path):
    assert resolve_source("auto", dev=tmp_path, has_picamera2=lambda: True).kind == "picamera2"
    for name in ("video10", "video2", "video-bad", "media0"):
        (tmp_path / name).touch()
    spec = resolve_source("auto", dev=tmp_path, has_picamera2=lambda: False)
    assert spec == SourceSpec("v4l2", str(tmp_path / "video2"))


def test_auto_without_any_camera_says_so(tmp_path):
    with pytest.raises(InputError, match="no camera found"):
        resolve_source("auto", dev=tmp_path, has_picamera2=lambda: False)


def test_stream_credentials_are_redacted():
    assert redact_url("rtsp://admin:s3cret@10.0.0.5/live") == "rtsp://admin:***@10.0.0.5/live"
    assert "s3cret" not in SourceSpec("stream", "rtsp://admin:s3cret@h/x").describe()


def test_a_missing_file_fails_at_start_not_later(tmp_path):
    capture = Capture(CameraConfig(source=str(tmp_path / "nope.mp4")))
    with pytest.raises(InputError, match="no such file"):
        capture.start()


# -- the mailbox ---------------------------------------------------------------------------


def test_mailbox_keeps_only_the_newest_frame():
    mailbox = Mailbox()
    frames = [types.SimpleNamespace(index=i) for i in range(5)]
    for frame in frames:
        mailbox.put(frame)  # type: ignore[arg-type]
    assert mailbox.take(0).index == 4  # type: ignore[union-attr]
    assert mailbox.dropped == 4 and mailbox.take(0) is None


def test_slow_consumer_gets_the_newest_frames_of_real_video_and_drops_are_counted(media):
    capture = Capture(CameraConfig(source=str(media(CLIP)), realtime=True))
    capture.start()
    taken, behind = [], []
    try:
        while len(taken) < 6:
            frame = capture.take(timeout=2.0)
            assert frame is not None
            behind.append(capture.mailbox.delivered - 1 - frame.index)
            taken.append(frame)
            time.sleep(0.2)  # inference five times slower than the clip
    finally:
        capture.stop()
    indices = [frame.index for frame in taken]
    assert indices == sorted(indices)
    assert min(np.diff(indices)) >= 3  # ~4.8 frames arrive per 0.2 s: stale ones skipped
    assert capture.dropped >= 12
    assert max(behind) == 0  # each frame taken was the newest there was, never a queued one
    assert taken[-1].image.shape == (360, 640, 3)


def test_realtime_paces_a_file_at_its_own_rate(media):
    capture = Capture(CameraConfig(source=str(media(CLIP)), realtime=True))
    capture.start()
    try:
        first = capture.take(timeout=2.0)
        start = time.monotonic()
        frame = first
        while frame is None or frame.index < first.index + 24:
            frame = capture.take(timeout=2.0)
        elapsed = time.monotonic() - start
    finally:
        capture.stop()
    assert 0.85 < elapsed < 1.5, elapsed  # 24 frames of a 23.98 fps clip: about one second


def test_not_realtime_hands_over_every_frame_in_order_and_ends(media):
    capture = Capture(CameraConfig(source=str(media("face_noface.mov")), realtime=False))
    capture.start()
    indices = []
    start = time.monotonic()
    while not capture.ended and time.monotonic() - start < 30:
        frame = capture.take(timeout=1.0)
        if frame is not None:
            indices.append(frame.index)
            time.sleep(0.001 if len(indices) % 20 else 0.05)  # an uneven consumer
    capture.stop()
    assert indices == list(range(169))
    assert capture.dropped == 0 and capture.state == "ended"


def test_every_frame_mode_decodes_one_ahead_and_starts_latency_at_the_handover(media):
    """A file at full speed: the next frame is decoded while the pipeline works on this one
    (one ahead, no more), and its latency clock starts when the pipeline takes it."""
    capture = Capture(CameraConfig(source=str(media(CLIP)), realtime=False))
    capture.start()
    try:
        first = capture.take(timeout=2.0)
        assert first is not None
        assert wait_until(lambda: capture.mailbox.delivered == 2, 2.0)
        time.sleep(0.2)  # the pipeline still busy with the first frame
        assert capture.mailbox.delivered == 2
        handover = time.monotonic()
        second = capture.take(timeout=1.0)
        assert second is not None and second.index == first.index + 1
        assert second.read_at >= handover
    finally:
        capture.stop()
    assert capture.dropped == 0


def test_a_looped_folder_keeps_rising_time(media, tmp_path):
    for name in ("single_face.jpg", "multi_face.jpg"):
        (tmp_path / name).write_bytes(media(name).read_bytes())
    capture = Capture(CameraConfig(source=str(tmp_path), loop=True, realtime=False))
    capture.start()
    frames = [capture.take(timeout=2.0) for _ in range(5)]
    capture.stop()
    assert [f.t for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]  # type: ignore[union-attr]


# -- a real network camera ------------------------------------------------------------------


def test_http_camera_that_stalls_is_reported_stalled(media):
    with MjpegCamera(media(CLIP), frames=20) as camera:
        capture = Capture(CameraConfig(source=camera.url))
        assert capture.spec.kind == "stream"
        capture.start()
        try:
            assert wait_until(lambda: capture.mailbox.delivered >= 20, 10)
            assert capture.state == "ok" or capture.state == "stalled"
            assert wait_until(lambda: capture.state == "stalled", 4)
            assert capture.mailbox.delivered == 20
        finally:
            capture.stop()


def test_http_camera_that_drops_the_connection_is_reopened(media):
    with MjpegCamera(media(CLIP), frames=10, fps=50, stall=False) as camera:
        capture = Capture(CameraConfig(source=camera.url))
        capture.start()
        try:
            assert wait_until(lambda: camera.connections >= 2, 10)
            assert wait_until(lambda: capture.mailbox.delivered >= 12, 10)
            assert capture.reopens >= 2
            frames = []
            while len(frames) < 3:
                frame = capture.take(timeout=2.0)
                assert frame is not None
                frames.append(frame)
        finally:
            capture.stop()
    assert [f.index for f in frames] == sorted(f.index for f in frames)
    assert frames[0].t < frames[-1].t  # one clock across reconnects


def test_a_stream_that_never_opens_is_lost_and_retried():
    capture = Capture(CameraConfig(source="http://127.0.0.1:9/none.mjpg"))
    capture.start()
    try:
        assert wait_until(lambda: capture.state == "lost", 5)
        assert capture.error and "cannot open" in capture.error
    finally:
        capture.stop()


# -- picamera2, with only the module replaced ------------------------------------------------


class FakePicamera2:
    """Stands in for picamera2.Picamera2: records the calls, hands out BGR arrays."""

    instances: ClassVar[list[FakePicamera2]] = []
    fail_after: ClassVar[int | None] = None
    cameras: ClassVar[list[dict]] = [{"Model": "imx708", "Num": 0}]

    @classmethod
    def global_camera_info(cls) -> list[dict]:
        return cls.cameras

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.calls: list[tuple] = []
        self.captured = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, **kwargs):
        self.calls.append(("create_video_configuration", kwargs))
        return {"config": kwargs}

    def configure(self, configuration):
        self.calls.append(("configure", configuration))

    def start(self):
        self.calls.append(("start",))

    def capture_array(self, name="main"):
        if self.fail_after is not None and self.captured >= self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        self.captured += 1
        size = self.calls[0][1]["main"]["size"]
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[:, :, 0] = 255  # blue first: BGR in memory, as "RGB888" is
        time.sleep(0.005)
        return image

    def stop(self):
        self.calls.append(("stop",))

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def picamera2(monkeypatch):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    module.__spec__ = importlib.machinery.ModuleSpec("picamera2", None)
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances = []
    FakePicamera2.fail_after = None
    FakePicamera2.cameras = [{"Model": "imx708", "Num": 0}]
    return FakePicamera2


def test_auto_uses_picamera2_only_when_libcamera_sees_a_camera(picamera2):
    assert picamera2_available()
    picamera2.cameras = []  # a Pi with picamera2 installed but only a USB webcam
    assert not picamera2_available()


def test_picamera2_is_configured_for_bgr_at_the_configured_size_and_rate(picamera2):
    source = Picamera2Source(320, 240, 15.0)
    frame = next(source.frames())
    source.close()
    (camera,) = picamera2.instances
    name, kwargs = camera.calls[0]
    assert name == "create_video_configuration"
    assert kwargs["main"] == {"size": (320, 240), "format": "RGB888"}
    assert kwargs["controls"] == {"FrameRate": 15.0}
    assert [c[0] for c in camera.calls[1:]] == ["configure", "start", "stop", "close"]
    assert frame.image.shape == (240, 320, 3) and frame.image[0, 0].tolist() == [255, 0, 0]


def test_picamera2_missing_is_an_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(InputError, match="python3-picamera2"):
        Picamera2Source(640, 480, 30.0)


def test_picamera2_failure_is_lost_and_the_camera_reopened(picamera2):
    picamera2.fail_after = 5
    capture = Capture(CameraConfig(source="picamera2", width=64, height=48))
    capture.start()
    try:
        assert wait_until(lambda: len(picamera2.instances) >= 2, 5)
        assert wait_until(lambda: capture.mailbox.delivered >= 8, 5)
        assert capture.reopens >= 2
        assert ("close",) in picamera2.instances[0].calls
    finally:
        capture.stop()


def test_picamera2_with_the_wrong_numpy_says_how_to_fix_it(monkeypatch):
    class Broken(types.ModuleType):
        def __getattr__(self, name):
            raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")

    monkeypatch.setitem(sys.modules, "picamera2", Broken("picamera2"))
    with pytest.raises(InputError, match="pip install simplejpeg"):
        Picamera2Source(640, 480, 30.0)


def test_no_picamera2_camera_attached_is_lost_not_fatal(monkeypatch):
    def absent(camera_num=0):
        raise IndexError("list index out of range")

    module = types.ModuleType("picamera2")
    module.Picamera2 = absent  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    with pytest.raises(CameraLost, match="no camera 0"):
        Picamera2Source(640, 480, 30.0)


def test_file_sources_are_the_files_module(media, tmp_path):
    from edge_agent.capture.camera import open_source

    video = open_source(SourceSpec("file", str(media(CLIP))), CameraConfig())
    assert isinstance(video, VideoSource)
    video.close()
    (tmp_path / "a.jpg").write_bytes(media("single_face.jpg").read_bytes())
    assert isinstance(open_source(SourceSpec("file", str(tmp_path)), CameraConfig()), FolderSource)
