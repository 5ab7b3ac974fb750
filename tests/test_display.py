"""The small display: screens rendered through luma's dummy device, checked pixel by pixel.

Only the I2C bus is faked (smbus2.SMBus, the thinnest seam under luma.oled), to check the
exact bytes an SSD1306 would receive.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_agent.config import DisplayConfig
from edge_agent.demo.samples import sample
from edge_agent.display import Display, DisplayError, DisplayState, open_display
from edge_agent.display.care import SHIFT_OFFSETS, SHIFT_PERIOD_S, NightHours, shift_offset
from edge_agent.display.labels import EMOTION_COLOURS
from edge_agent.errors import ConfigError
from edge_agent.types import BrokerState, BrokerStatus, FaceResult

# A wall-clock time whose pixel shift is (0, 0).
WALL = 1_700_000_000 // (SHIFT_PERIOD_S * len(SHIFT_OFFSETS)) * SHIFT_PERIOD_S * len(SHIFT_OFFSETS)
FACE_BOX = (190.0, 150.0, 205.0, 220.0)  # the face in single_face.jpg


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    image = cv2.imread(str(sample("single_face.jpg")))
    assert image is not None
    return image


def face(
    emotion: str | None = "happy",
    box: tuple[float, float, float, float] = FACE_BOX,
    age: float | None = 28.0,
    gender: str | None = "male",
    track: int = 1,
) -> FaceResult:
    return FaceResult(track, box, 0.97, emotion, None, age, gender, 0.9)


def state(faces: list[FaceResult] | None = None, **changes: object) -> DisplayState:
    base = DisplayState(
        faces=faces or [],
        frame=None,
        fps=14.8,
        broker=BrokerStatus(BrokerState.CONNECTED),
        camera="ok",
        faults=[],
        ip="192.168.1.23",
        wall=WALL,
    )
    return replace(base, **changes)


def panel(tmp_path: Path, **changes: object) -> Display:
    config = replace(DisplayConfig(kind="png", path=str(tmp_path / "panel.png")), **changes)
    display = open_display(config)
    assert isinstance(display, Display)
    return display


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L") if image.mode == "1" else image)


def lit(image: Image.Image) -> float:
    """Share of pixels that are not black."""
    grey = np.asarray(image.convert("L"))
    return float((grey > 0).mean())


def local_wall(hour: int, minute: int = 0) -> float:
    return time.mktime((2024, 1, 10, hour, minute, 0, 0, 0, -1))


def test_kind_none_opens_nothing() -> None:
    assert open_display(DisplayConfig()) is None


def test_mono_face_screen_is_drawn_in_two_levels(tmp_path: Path) -> None:
    image = panel(tmp_path).render(state([face()]))
    assert image.mode == "1" and image.size == (128, 64)
    assert set(np.unique(pixels(image))) == {0, 255}
    assert 0.08 < lit(image) < 0.6  # a large word and an icon, not a blank or white panel


def test_face_and_idle_screens_differ(tmp_path: Path) -> None:
    display = panel(tmp_path)
    with_face = pixels(display.render(state([face()])))
    face_texts = [text for text, _ in display.texts]
    idle = pixels(display.render(state([])))
    idle_texts = [text for text, _ in display.texts]
    assert (with_face != idle).mean() > 0.1
    assert "happy" in face_texts and "male 28" in face_texts and "1" in face_texts
    assert idle_texts == ["14.8 fps", "MQTT connected", "192.168.1.23"]


def test_each_emotion_has_its_own_icon(tmp_path: Path) -> None:
    display = panel(tmp_path)
    icons = {}
    for emotion in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", None):
        image = pixels(display.render(state([face(emotion)])))
        icons[emotion] = image[:, :42].tobytes()  # the icon column left of the word
        assert (image[:, :42] > 0).mean() > 0.1
    assert len(set(icons.values())) == len(icons)


@pytest.mark.parametrize(
    "size",
    [(128, 64), (128, 32), pytest.param((240, 240), marks=pytest.mark.slow), (320, 240), (96, 96)],
)
@pytest.mark.parametrize("colour", [False, True])
def test_text_stays_inside_the_panel(
    tmp_path: Path, frame: np.ndarray, size: tuple[int, int], colour: bool
) -> None:
    display = panel(tmp_path, width=size[0], height=size[1], color=colour)
    long = BrokerStatus(BrokerState.AUTH_FAILED, "not authorised")
    states = [
        state([face("surprise", age=100.0, gender="female")], frame=frame),
        state([face("surprise", gender="female"), face(track=2)] * 6, broker=long, frame=frame),
        state(
            [],
            broker=long,
            camera="lost",
            faults=["model error: emotion_mini_xception.tflite does not match its sha256"],
        ),
        state(
            [],
            broker=BrokerStatus(BrokerState.CONNECTING),
            ip="fe80::1ff:fe23:4567:890a",
            fps=123.4,
            frame=frame,
        ),
        state([], camera="starting", ip=None),
    ]
    for shown in states:
        for step in range(len(SHIFT_OFFSETS)):  # every position of the pixel shift
            display.render(replace(shown, wall=WALL + step * SHIFT_PERIOD_S))
            assert display.texts
            for text, (left, top, right, bottom) in display.texts:
                assert 0 <= left <= right <= size[0], (text, size)
                assert 0 <= top <= bottom <= size[1], (text, size)


def test_long_emotion_word_is_shown_whole_on_the_small_oled(tmp_path: Path) -> None:
    display = panel(tmp_path)
    display.render(
        state(
            [face("surprise", gender="female")],
            broker=BrokerStatus(BrokerState.AUTH_FAILED, "not authorised"),
        )
    )
    texts = [text for text, _ in display.texts]
    assert "surprise" in texts and "female 28" in texts


def test_mono_panel_shows_no_thumbnail(tmp_path: Path, frame: np.ndarray) -> None:
    display = panel(tmp_path)
    assert (
        pixels(display.render(state([face()], frame=frame))).tobytes()
        == pixels(display.render(state([face()]))).tobytes()
    )


def test_colour_panel_shows_the_frame_with_boxes(tmp_path: Path, frame: np.ndarray) -> None:
    display = panel(tmp_path, width=240, height=240, color=True)
    image = display.render(state([face()], frame=frame))
    assert image.mode == "RGB" and image.size == (240, 240)
    rgb = np.asarray(image)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500  # a photo, not flat colours
    blue, green, red = EMOTION_COLOURS["happy"]
    box_colour = np.all(rgb == (red, green, blue), axis=-1)
    assert box_colour[:135].sum() > 100  # the face box in the thumbnail (top part)
    assert box_colour[135:].sum() > 100  # the icon and word below it
    # The thumbnail is the sample photo itself: its centre matches the scaled frame.
    scale = min(232 / frame.shape[1], round(232 * 0.58) / frame.shape[0])
    small = cv2.resize(
        frame,
        (round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
        interpolation=cv2.INTER_AREA,
    )[..., ::-1]
    top = 4 + (round(232 * 0.58) - small.shape[0]) // 2
    left = 4 + (232 - small.shape[1]) // 2
    patch = rgb[top + 100 : top + 120, left + 20 : left + 40].astype(int)
    assert np.abs(patch - small[100:120, 20:40].astype(int)).max() <= 2


def test_colour_without_a_frame_is_text_only(tmp_path: Path) -> None:
    display = panel(tmp_path, width=240, height=240, color=True)
    rgb = np.asarray(display.render(state([face()])))
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 2  # coloured word and icon
    assert "happy" in [text for text, _ in display.texts]


def test_fault_screen_is_plain_and_different(tmp_path: Path) -> None:
    display = panel(tmp_path)
    idle = pixels(display.render(state([])))
    faulty = pixels(display.render(state([], camera="lost")))
    assert [text for text, _ in display.texts] == ["FAULT", "camera lost"]
    display.render(state([], camera="stalled"))
    assert " ".join(text for text, _ in display.texts) == "FAULT camera stalled"
    assert (faulty != idle).mean() > 0.1
    assert (faulty[5] > 0).mean() > 0.6  # the banner row is lit: inverted title

    display.render(state([], broker=BrokerStatus(BrokerState.AUTH_FAILED, "not authorised")))
    assert " ".join(text for text, _ in display.texts[1:]) == "MQTT auth failed: not authorised"
    display.render(state([], faults=["model error: age_v1.tflite missing"]))
    assert "model error:" in " ".join(text for text, _ in display.texts)


def test_too_many_faults_take_turns(tmp_path: Path) -> None:
    display = panel(tmp_path)
    shown = state(
        [],
        camera="lost",
        broker=BrokerStatus(BrokerState.AUTH_FAILED, "not authorised"),
        faults=["model error: emotion_mini_xception.tflite does not match"],
    )
    titles = set()
    for second in range(0, 12, 4):
        display.render(replace(shown, wall=WALL + second))
        titles.add(display.texts[0][0])
    assert titles == {"FAULT 1/3", "FAULT 2/3", "FAULT 3/3"}


def test_fault_with_faces_keeps_faces_and_adds_a_warning(tmp_path: Path) -> None:
    display = panel(tmp_path)
    fine = pixels(display.render(state([face()])))
    warned = pixels(
        display.render(
            state([face()], broker=BrokerStatus(BrokerState.DISCONNECTED, "unreachable"))
        )
    )
    assert "happy" in [text for text, _ in display.texts]
    changed = np.argwhere(fine != warned)
    assert len(changed) > 10 and changed[:, 0].min() > 40  # only the bottom row changed


def test_night_hours_switch_the_panel_off(tmp_path: Path) -> None:
    display = panel(tmp_path, night_off="23:00-07:00")
    night = state([face()], wall=local_wall(2))
    assert lit(display.render(night)) == 0.0
    display.update(night)
    assert display.tick()
    assert display.off
    assert lit(Image.open(tmp_path / "panel.png")) == 0.0
    day = state([face()], wall=local_wall(12))
    display.update(day)
    display.tick()
    assert not display.off
    assert lit(Image.open(tmp_path / "panel.png")) > 0.05


def test_night_hours_parse() -> None:
    hours = NightHours.parse("23:00-07:00")
    assert hours is not None
    assert hours.contains(local_wall(23, 30)) and hours.contains(local_wall(6, 59))
    assert not hours.contains(local_wall(7)) and not hours.contains(local_wall(12))
    day = NightHours.parse("9:30-17:00")
    assert day is not None and day.contains(local_wall(10)) and not day.contains(local_wall(18))
    assert NightHours.parse("") is None
    for bad in ("23-07", "25:00-07:00", "07:00-07:00"):
        with pytest.raises(ConfigError, match=r"display\.night_off"):
            NightHours.parse(bad)
    with pytest.raises(ConfigError):
        open_display(DisplayConfig(kind="png", night_off="late"))


def test_pixel_shift_moves_the_whole_picture(tmp_path: Path) -> None:
    display = panel(tmp_path)
    assert shift_offset(WALL) == (0, 0) and shift_offset(WALL + SHIFT_PERIOD_S) == (1, 0)
    here = pixels(display.render(state([face()])))
    moved = pixels(display.render(state([face()], wall=WALL + SHIFT_PERIOD_S)))
    assert not np.array_equal(here, moved)
    assert np.array_equal(moved[:, 1:], here[:, :-1])
    still = panel(tmp_path, shift=False)
    assert np.array_equal(pixels(still.render(state([face()], wall=WALL + SHIFT_PERIOD_S))), here)


def test_dims_after_idle_time(tmp_path: Path) -> None:
    display = panel(tmp_path, dim_after_s=10.0, contrast=200)
    for offset, faces, expected in [
        (0, [face()], 200),
        (5, [], 200),
        (11, [], 20),
        (12, [face()], 200),
        (30, [], 20),
    ]:
        display.update(state(faces, wall=WALL + offset))
        display.tick()
        assert display.contrast == expected, offset
    never = panel(tmp_path, dim_after_s=0.0)
    never.update(state([], wall=WALL))
    never.tick()
    never.update(state([], wall=WALL + 86_400))
    never.tick()
    assert never.contrast == never.config.contrast


def test_png_kind_writes_the_panel_image(tmp_path: Path, frame: np.ndarray) -> None:
    for config, mode in [({}, "1"), ({"width": 240, "height": 240, "color": True}, "RGB")]:
        display = panel(tmp_path, **config)
        display.update(state([face()], frame=frame))
        assert display.tick()
        assert not display.tick()  # unchanged: not sent again
        written = Image.open(tmp_path / "panel.png")
        assert written.size == display.size and written.mode == mode
        assert np.array_equal(pixels(written), pixels(display.render(state([face()], frame=frame))))


def test_rotated_png_is_panel_sized(tmp_path: Path) -> None:
    display = panel(tmp_path, rotation=1)
    assert display.size == (64, 128)  # drawn upright for a panel mounted on its side
    display.update(state([face()]))
    display.tick()
    assert Image.open(tmp_path / "panel.png").size == (128, 64)


def test_png_in_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DisplayError, match="does not exist"):
        open_display(DisplayConfig(kind="png", path=str(tmp_path / "nowhere" / "x.png")))


def test_update_never_waits_for_the_panel(tmp_path: Path) -> None:
    display = panel(tmp_path, fps=50.0)
    display.start()
    try:
        display.update(state([face()]))
        deadline = time.monotonic() + 5
        while display.frames_shown == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert display.frames_shown >= 1
        with display._render_lock:  # the render thread is stuck drawing
            started = time.perf_counter()
            for _ in range(100):
                display.update(state([]))
            assert time.perf_counter() - started < 0.05
    finally:
        display.stop()
    assert lit(Image.open(tmp_path / "panel.png")) == 0.0  # stopped: panel cleared


class FakeSMBus:
    """smbus2.SMBus as luma.core's i2c uses it, keeping what it was sent."""

    opened: ClassVar[list[FakeSMBus]] = []

    def __init__(self, port: int) -> None:
        self.port = port
        self.commands: list[list[int]] = []
        self.data: list[int] = []
        FakeSMBus.opened.append(self)

    def write_i2c_block_data(self, address: int, register: int, values: list[int]) -> None:
        assert (address, register) == (0x3C, 0x00)
        self.commands.append(list(values))

    def i2c_rdwr(self, *messages: object) -> None:
        for message in messages:
            payload = list(message)  # type: ignore[call-overload]
            assert payload[0] == 0x40
            self.data.extend(payload[1:])

    def close(self) -> None:
        pass


def test_ssd1306_receives_the_rendered_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import smbus2

    FakeSMBus.opened.clear()
    monkeypatch.setattr(smbus2, "SMBus", FakeSMBus)
    display = open_display(
        DisplayConfig(kind="ssd1306", bus=3, contrast=180, night_off="23:00-07:00")
    )
    assert display is not None
    (bus,) = FakeSMBus.opened
    assert bus.port == 3 and [0x81, 180] in bus.commands
    bus.data.clear()
    shown = state([face()], wall=local_wall(12))
    display.update(shown)
    display.tick()
    assert len(bus.data) == 128 * 64 // 8
    # SSD1306 memory: one byte per column of each 8-row page, lowest bit on top.
    pages = np.array(bus.data, dtype=np.uint8).reshape(8, 128)
    bits = np.unpackbits(pages[:, None, :], axis=1, bitorder="little").reshape(64, 128)
    assert np.array_equal(bits * 255, pixels(display.render(shown)))
    display.update(state([], wall=local_wall(23, 30)))
    display.tick()
    assert bus.commands[-1] == [0xAE]  # display off for the night
    display.stop()


def test_missing_i2c_bus_is_a_clear_error() -> None:
    if Path("/dev/i2c-13").exists():
        pytest.skip("this machine has an I2C bus 13")
    with pytest.raises(DisplayError, match=r"I2C bus 13 \(/dev/i2c-13\)"):
        open_display(DisplayConfig(kind="sh1106", bus=13))


def test_spi_panel_without_spi_libraries_says_what_to_install() -> None:
    try:
        import RPi.GPIO  # noqa: F401
        import spidev  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("spidev and RPi.GPIO are installed here")
    with pytest.raises(DisplayError, match=r"display-spi"):
        open_display(DisplayConfig(kind="st7789", width=240, height=240, color=True))


def test_missing_framebuffer_is_a_clear_error() -> None:
    if Path("/dev/fb7").exists():
        pytest.skip("this machine has /dev/fb7")
    with pytest.raises(DisplayError, match=r"/dev/fb7"):
        open_display(DisplayConfig(kind="framebuffer", path="/dev/fb7"))
    with pytest.raises(ConfigError, match=r"display\.rotation"):
        open_display(DisplayConfig(kind="framebuffer", path="/dev/fb7", rotation=1))


def test_a_panel_that_stops_answering_does_not_stop_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    display = panel(tmp_path, fps=50.0)
    real = display.device.display
    calls = []

    def flaky(image: Image.Image) -> None:  # the bus fails twice, then recovers
        calls.append(image)
        if len(calls) <= 2:
            raise OSError(121, "Remote I/O error")
        real(image)

    monkeypatch.setattr(display.device, "display", flaky)
    display.update(state([face()]))
    display.start()
    try:
        deadline = time.monotonic() + 5
        while display.frames_shown == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        display.stop()
    assert len(calls) >= 3 and display.frames_shown >= 1
