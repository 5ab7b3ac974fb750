"""The one config file: a typed, validated model of every option, with defaults.

Every field is declared once here with its type and bounds; loading walks the TOML against
these declarations, so an unknown key, a wrong type or an out-of-range value is reported
with its key path (`detector.score_threshold = 1.5: must be at most 1`) and exit code 78,
never silently ignored. The files a config names (the MQTT password and TLS files, the state
folder) are checked when it is loaded too, so `config check` refuses what `run` would.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import io
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import stat
import textwrap
import tokenize
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_agent.errors import ConfigError

log = logging.getLogger("edge_agent.config")

DEFAULT_PATH = Path("/etc/edge-agent/config.toml")


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A field with an inclusive numeric range, checked on load."""
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(slots=True)
class CameraConfig:
    source: str = "auto"
    loop: bool = False
    realtime: bool = True
    width: int = bounded(640, 16, 4096)
    height: int = bounded(480, 16, 4096)
    fps: float = bounded(30.0, 0.1, 240.0)
    max_pixels: int = bounded(40_000_000, 10_000, 400_000_000)


@dataclass(slots=True)
class DetectorConfig:
    model: str = "multiscale"  # or "short_range", "full_range", an SSD .tflite path
    score_threshold: float = bounded(0.65, 0.0, 1.0)
    min_face_size: float = bounded(12.0, 0.0, 4096.0)
    scans_per_frame: int = bounded(1, 1, 64)


@dataclass(slots=True)
class ClassifierConfig:
    emotion: bool = True
    emotion_model: Literal["faceapi", "mini_xception"] = "faceapi"
    age: bool = True
    gender: bool = True
    level_faces: bool = True
    rate_hz: float = bounded(0.0, 0.0, 1000.0)  # per track; 0 classifies every frame
    emotion_min_face: float = bounded(32.0, 0.0, 4096.0)
    emotion_min_sharpness: float = bounded(0.012, 0.0, 1.0)
    # Read each face's mirror image too: a photo averages every look in one batch; a stream
    # reads one look of a face a frame, in turn, so the mirror costs nothing per frame.
    emotion_flip: bool = True


@dataclass(slots=True)
class TrackerConfig:
    match_iou: float = bounded(0.3, 0.01, 1.0)
    confirm_hits: int = bounded(2, 1, 100)
    lost_after_s: float = bounded(1.0, 0.0, 3600.0)
    smoothing_s: float = bounded(0.4, 0.0, 60.0)
    emotion_hold_s: float = bounded(0.6, 0.0, 60.0)
    emotion_min_confidence: float = bounded(0.42, 0.0, 1.0)


@dataclass(slots=True)
class ModelsConfig:
    dir: str = ""  # empty: the models/ folder shipped beside the package
    variant: Literal["float", "int8"] = "float"
    num_threads: int = bounded(2, 1, 64)
    edgetpu_device: str = ""
    edgetpu_probe_timeout_s: float = bounded(30.0, 1.0, 600.0)


@dataclass(slots=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = bounded(1883, 1, 65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str = ""
    topic_prefix: str = "edge-agent"
    username: str = ""
    password_file: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    keepalive_s: int = bounded(30, 5, 3600)
    stats_interval_s: float = bounded(30.0, 1.0, 86400.0)
    outbox_max_events: int = bounded(100_000, 10, 10_000_000)
    outbox_max_bytes: int = bounded(50_000_000, 10_000, 10_000_000_000)
    # "full" fsyncs each frame's events (survives a power cut); "normal" only a crash.
    outbox_sync: Literal["full", "normal"] = "full"
    tls: bool = False  # TLS with the system CAs; implied by tls_ca or tls_cert
    reconnect_min_s: float = bounded(1.0, 0.01, 3600.0)
    reconnect_max_s: float = bounded(60.0, 0.01, 86400.0)
    state_interval_s: float = bounded(1.0, 0.0, 3600.0)  # least time between state publishes
    faces_interval_s: float = bounded(0.2, 0.0, 3600.0)  # least time between faces publishes
    area: str = ""  # Home Assistant's suggested area for the device, e.g. "Kitchen"


@dataclass(slots=True)
class StateConfig:
    dir: str = "/var/lib/edge-agent"


@dataclass(slots=True)
class DisplayConfig:
    kind: Literal["none", "ssd1306", "sh1106", "st7789", "framebuffer", "png"] = "none"
    path: str = "display.png"  # where the png kind writes; a /dev/fbN for framebuffer
    width: int = bounded(128, 8, 4096)
    height: int = bounded(64, 8, 4096)
    color: bool = False
    bus: int = bounded(1, 0, 16)  # I2C or SPI bus number
    address: int = bounded(0x3C, 0, 0x7F)  # I2C address of an OLED
    rotation: int = bounded(0, 0, 3)  # quarter turns
    contrast: int = bounded(200, 0, 255)
    fps: float = bounded(5.0, 0.2, 60.0)
    dim_after_s: float = bounded(60.0, 0.0, 86400.0)  # no face for this long: dim; 0 never
    night_off: str = ""  # e.g. "23:00-07:00"; empty keeps the panel on
    shift: bool = True  # move the picture by 1 px every 3 minutes against OLED burn-in


@dataclass(slots=True)
class DashboardConfig:
    listen: str = "127.0.0.1:8080"
    password_file: str = ""


@dataclass(slots=True)
class Config:
    device_id: str = ""  # empty: the host name
    accelerator: Literal["auto", "cpu", "edgetpu"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    state: StateConfig = field(default_factory=StateConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)

    @property
    def effective_device_id(self) -> str:
        return self.device_id or socket.gethostname()


# --- validation ---------------------------------------------------------------------------
# Every rule a value must follow lives here, once, and runs when a file is loaded, so
# `config check`, `check` and `run` accept and refuse the same files. Rules on one key are
# in VALIDATORS and run while the file is read; rules that span keys run after it
# (`_check_config`); rules that look at the filesystem (the password and TLS files,
# state.dir) run in `load` (`check_files`). The capture, the pipeline, the display and the
# publisher import what they need from here instead of keeping a copy. Each rule raises
# ConfigError naming the key path and the value.

_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{0,64}")
_NIGHT = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
V4L2_NAME = re.compile(r"video\d+")  # a V4L2 camera's node in /dev
# detector.model names (the first is the default); anything else is an SSD .tflite file.
BLAZEFACE_MODELS = ("multiscale", "short_range", "full_range")
# MQTT brokers must accept client ids of 1-23 letters and digits and may accept more (and
# most do); the protocol's own limit is 65535 bytes. 256 bytes is plenty for a name and
# far from any broker's limit.
CLIENT_ID_MAX_BYTES = 256
_TOPIC_FORBIDDEN = re.compile(r"[+#\x00]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut short when it is very long."""
    text = repr(value)
    if isinstance(value, str) and len(text) > 80:
        return f"{text[:60]}... ({len(value)} characters)"
    return text


def stream_scheme(source: str) -> str | None:
    """The scheme of a URL, in lower case ("rtsp" for "RTSP://cam/s"); None if no URL."""
    return source.split("://", 1)[0].lower() if "://" in source else None


def is_v4l2_device(source: str) -> bool:
    """`/dev/videoN`."""
    return source.startswith("/dev/") and V4L2_NAME.fullmatch(source[5:]) is not None


# libedgetpu's `device` option: any USB or PCIe Edge TPU, the N-th of a kind, or the N-th.
_EDGETPU_DEVICE = re.compile(r"(usb|pci)(:\d{1,3})?|:\d{1,3}")


def _check_edgetpu_device(path: str, value: str) -> None:
    if value and not _EDGETPU_DEVICE.fullmatch(value):
        raise ConfigError(
            f'{path} = {_shown(value)}: must be "usb", "usb:N", "pci", "pci:N", ":N" '
            '(the N-th Edge TPU, from 0) or "" (the first found)'
        )


def _check_device_id(path: str, value: str) -> None:
    if not _DEVICE_ID.fullmatch(value):
        raise ConfigError(
            f"{path} = {_shown(value)}: use at most 64 letters, digits, '-' or '_' "
            "(it becomes part of MQTT topics and entity ids)"
        )


def _check_source(path: str, value: str) -> None:
    if not value.strip():
        raise ConfigError(f'{path} = {value!r}: must not be empty (use "auto")')
    scheme = stream_scheme(value)
    if scheme is not None:
        if scheme not in STREAM_SCHEMES:
            raise ConfigError(
                f"{path} = {_shown(value)}: unsupported URL scheme {scheme!r} "
                f"(use one of {', '.join(STREAM_SCHEMES)})"
            )
    elif value.startswith("/dev/") and not is_v4l2_device(value):
        raise ConfigError(f"{path} = {_shown(value)}: a device must be /dev/videoN")


def _check_detector(path: str, value: str) -> None:
    if value not in BLAZEFACE_MODELS and not value.lower().endswith(".tflite"):
        raise ConfigError(
            f'{path} = {_shown(value)}: must be "short_range", "full_range" or the path of an '
            "SSD .tflite file"
        )


def _check_absolute(path: str, value: str) -> None:
    if not value.startswith("/"):
        raise ConfigError(f"{path} = {_shown(value)}: must be an absolute path")


def night_span(value: str) -> tuple[int, int] | None:
    """`display.night_off` as (start, end) in minutes after midnight; None when empty."""
    if not value:
        return None
    match = _NIGHT.fullmatch(value)
    if (
        not match
        or int(match[1]) > 23
        or int(match[3]) > 23
        or int(match[2]) > 59
        or int(match[4]) > 59
    ):
        raise ConfigError(
            f'display.night_off = {_shown(value)}: must be "HH:MM-HH:MM" (e.g. "23:00-07:00") '
            "or empty"
        )
    start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
    if start == end:
        raise ConfigError(
            f'display.night_off = {value!r}: start and end are the same (use "" to keep the '
            "panel on)"
        )
    return start, end


def _check_night(path: str, value: str) -> None:
    night_span(value)


def check_topic_part(key: str, value: str, *, allow_slash: bool) -> None:
    """A topic prefix (allow_slash) or a single topic level: not empty, no wildcard."""
    if not value:
        raise ConfigError(f"{key} = {value!r}: must not be empty")
    if _TOPIC_FORBIDDEN.search(value) or (not allow_slash and "/" in value):
        forbidden = "+, #" if allow_slash else "/, +, #"
        raise ConfigError(f"{key} = {_shown(value)}: must not contain {forbidden}")


def _check_client_id(path: str, value: str) -> None:
    if _CONTROL.search(value):
        raise ConfigError(f"{path} = {_shown(value)}: must not contain control characters")
    size = len(value.encode("utf-8"))
    if size > CLIENT_ID_MAX_BYTES:
        raise ConfigError(
            f"{path} = {_shown(value)}: must be at most {CLIENT_ID_MAX_BYTES} bytes of UTF-8, "
            f"not {size} (empty: edge-agent-<device id>)"
        )


def parse_listen(key: str, value: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets: `[::1]:8080`) as (host, port)."""
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{key} = {_shown(value)}: must be HOST:PORT with a port from 1 to 65535 "
            '(e.g. "127.0.0.1:8080" or "[::1]:8080")'
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_listen(path: str, value: str) -> None:
    parse_listen(path, value)


VALIDATORS: dict[str, typing.Callable[[str, Any], None]] = {
    "device_id": _check_device_id,
    "camera.source": _check_source,
    "detector.model": _check_detector,
    "mqtt.client_id": _check_client_id,
    "state.dir": _check_absolute,
    "models.edgetpu_device": _check_edgetpu_device,
    "display.night_off": _check_night,
    "dashboard.listen": _check_listen,
}


def check_mqtt(mqtt: MqttConfig) -> None:
    """The [mqtt] values that become topics. Run on load; the publisher runs it again for a
    config built in code (it costs nothing)."""
    check_topic_part("mqtt.topic_prefix", mqtt.topic_prefix, allow_slash=True)
    if mqtt.discovery:
        check_topic_part("mqtt.discovery_prefix", mqtt.discovery_prefix, allow_slash=True)
    _check_client_id("mqtt.client_id", mqtt.client_id)


def _check_config(config: Config) -> None:
    """Rules that span keys."""
    mqtt = config.mqtt
    if mqtt.enabled and not mqtt.host.strip():
        raise ConfigError("mqtt.host = '': must be set while mqtt.enabled = true")
    low, high = getattr(mqtt, "reconnect_min_s", None), getattr(mqtt, "reconnect_max_s", None)
    if low is not None and high is not None and low > high:
        raise ConfigError(
            f"mqtt.reconnect_min_s = {low!r}: must not exceed mqtt.reconnect_max_s = {high!r}"
        )
    check_mqtt(mqtt)
    check_display(config.display)


def check_display(display: DisplayConfig) -> None:
    """Display rules across keys; the display applies them to a config built in code too."""
    night_span(display.night_off)
    if display.kind == "framebuffer" and display.rotation:
        raise ConfigError(
            f"display.rotation = {display.rotation!r}: must be 0 for the framebuffer kind "
            "(rotate the framebuffer itself: display_lcd_rotate, fbcon=rotate)"
        )


# Rules that look at the filesystem. `load` runs them, so `config check` on a file whose
# password_file is missing says so; the connection calls the same functions when it reads
# the password and builds the TLS context.


def _os_reason(error: OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({error.reason or error})"
    return error.strerror.lower() if error.strerror else str(error) or type(error).__name__


def _check_regular_file(key: str, value: str) -> None:
    try:
        mode = os.stat(value).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{key} = {value!r}: file not found") from None
    except OSError as error:
        raise ConfigError(f"{key} = {value!r}: cannot read ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{key} = {value!r}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{key} = {value!r}: not a regular file")


def read_password(mqtt: MqttConfig) -> str | None:
    """The password in `mqtt.password_file` (trailing newline stripped); None if no file is
    set. Never part of a message: a file that is not UTF-8 is refused without quoting it."""
    if not mqtt.password_file:
        return None
    key, value = "mqtt.password_file", mqtt.password_file
    if not mqtt.username:
        raise ConfigError(f"{key} = {value!r}: needs mqtt.username, which is empty")
    return read_secret(key, value)


def read_dashboard_password(dashboard: DashboardConfig) -> str | None:
    """The password the dashboard asks for, from `dashboard.password_file`; None if unset."""
    if not dashboard.password_file:
        return None
    return read_secret("dashboard.password_file", dashboard.password_file)


def read_secret(key: str, value: str) -> str:
    """The secret in file `value` (trailing newline stripped), named `key` in messages."""
    _check_regular_file(key, value)
    try:
        password = Path(value).read_text(encoding="utf-8").rstrip("\r\n")
        mode = os.stat(value).st_mode
    except UnicodeDecodeError:  # its message would quote a byte of the password
        raise ConfigError(f"{key} = {value!r}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"{key} = {value!r}: cannot read ({error.strerror or error})") from None
    if not password:
        raise ConfigError(f"{key} = {value!r}: the file is empty (no password in it)")
    if mode & 0o044 and value not in _WARNED_READABLE:
        _WARNED_READABLE.add(value)
        who = "everyone" if mode & 0o004 else "its group"
        log.warning(
            "%s = %r is readable by %s (mode %o); chmod 600 it", key, value, who, mode & 0o777
        )
    return password


_WARNED_READABLE: set[str] = set()  # once a process, not at every reconnect


def tls_context(mqtt: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context the [mqtt] keys ask for (None for no TLS), its files checked."""
    if not (mqtt.tls or mqtt.tls_ca or mqtt.tls_cert or mqtt.tls_key):
        return None
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(mqtt, key)
        if value:
            _check_regular_file(f"mqtt.{key}", value)
    if mqtt.tls_key and not mqtt.tls_cert:
        raise ConfigError("mqtt.tls_key is set but mqtt.tls_cert is empty")
    try:
        context = ssl.create_default_context(cafile=mqtt.tls_ca or None)
    except OSError as error:  # ssl.SSLError is one
        raise ConfigError(
            f"mqtt.tls_ca = {mqtt.tls_ca!r}: not a usable CA file ({_os_reason(error)})"
        ) from None
    if mqtt.tls_cert:
        try:
            context.load_cert_chain(mqtt.tls_cert, mqtt.tls_key or None)
        except OSError as error:
            raise ConfigError(
                f"mqtt.tls_cert = {mqtt.tls_cert!r}: not a usable certificate "
                f"and key ({_os_reason(error)})"
            ) from None
    return context


def _check_state_dir(value: str) -> None:
    """Not a file, nor below one (a folder that does not exist yet is fine: systemd's
    StateDirectory or the outbox creates it)."""
    path = Path(value)
    for candidate in (path, *path.parents):
        try:
            mode = os.stat(candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:  # cannot look (permissions): the outbox says so when it opens
            return
        if stat.S_ISDIR(mode):
            return
        if candidate != path:
            raise ConfigError(f"state.dir = {value!r}: {candidate} is not a folder")
        what = "is a file, not a folder" if stat.S_ISREG(mode) else "is not a folder"
        raise ConfigError(f"state.dir = {value!r}: {what}")


def check_files(config: Config) -> None:
    """The rules that need the filesystem: the password files can be read (each is read and
    dropped), the TLS files are usable, state.dir is not a file."""
    read_password(config.mqtt)
    read_dashboard_password(config.dashboard)
    tls_context(config.mqtt)
    _check_state_dir(config.state.dir)


def _check_value(path: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    written = value  # as the file spelled it, for the message
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{path} = {value!r}: must be one of {', '.join(map(repr, choices))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} = {value!r}: must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} = {value!r}: must be a whole number")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path} = {value!r}: must be a number")
        value = float(value)
        if not math.isfinite(value):  # nan passes every range check; inf is no setting
            raise ConfigError(f"{path} = {written!r}: must be a finite number")
    elif hint is str and not isinstance(value, str):
        raise ConfigError(f"{path} = {value!r}: must be a string")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and value < low:
        raise ConfigError(f"{path} = {written!r}: must be at least {low}")
    if high is not None and value > high:
        raise ConfigError(f"{path} = {written!r}: must be at most {high}")
    if check := VALIDATORS.get(path):
        check(path, value)
    return value


def _build(cls: type, table: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(fields)
            if isinstance(value, dict):
                raise ConfigError(f"[{path}]: unknown section (known keys here: {known})")
            where = f"section [{prefix[:-1]}]" if prefix else "the top level"
            raise ConfigError(f"{path}: unknown key in {where} (known: {known})")
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{path} = {value!r}: must be a section [{path}]")
            values[key] = _build(hint, value, f"{path}.")
        else:
            if isinstance(value, dict):
                raise ConfigError(f"[{path}]: {path} is a key, not a section")
            values[key] = _check_value(path, value, hint, fields[key].metadata)
    return cls(**values)


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse(text: str, source: str = "<config>") -> Config:
    try:
        table = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        if position:
            message = _TOML_POSITION.sub("", message).strip()
            raise ConfigError(
                f"{source}:{position[1]}: TOML syntax error at line {position[1]}, "
                f"column {position[2]}: {message}"
            ) from None
        raise ConfigError(f"{source}: TOML syntax error: {message}") from None
    try:
        config = _build(Config, table, "")
        _check_config(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


def load(path: Path) -> Config:
    """Read and check a config file: its values (`parse`), then the files it names."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from Windows editors is fine
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config ({error})") from None
    config = parse(text, str(path))
    _check_files_of(config, str(path))
    return config


def _check_files_of(config: Config, source: str) -> None:
    try:
        check_files(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """The effective config as plain data. Secrets never live in it: the MQTT password is
    read from `password_file` or the environment when the agent starts."""
    return dataclasses.asdict(config)


_SECRET = re.compile(r"(password|secret|token|psk)(?!_file)")


def masked(config: Config) -> Config:
    """A copy fit to print: a value under a secret-looking key becomes "***". The file holds
    no secret today (passwords come from password_file); this keeps it so if one is added."""
    copied = copy.deepcopy(config)
    for path, value in flatten(copied).items():
        *sections, key = path.split(".")
        if isinstance(value, str) and value and _SECRET.search(key):
            target = copied
            for section in sections:
                target = getattr(target, section)
            setattr(target, key, "***")
    return copied


def resolve_path(path: str | None) -> Path | None:
    """The file `load_or_default` would read: the one named, else the installed one if any."""
    if path:
        return Path(path)
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def load_or_default(path: str | None) -> Config:
    """The file named on the command line, else the installed one, else the defaults."""
    resolved = resolve_path(path)
    if resolved is not None:
        return load(resolved)
    config = Config()
    _check_files_of(config, "built-in defaults")
    return config


# --- reload ---------------------------------------------------------------------------------
# What SIGHUP may change in a running daemon: everything that does not reopen the camera,
# reload a model or reconnect the broker. Display settings reopen only the panel.

RELOADABLE = (
    "log_level",
    "detector.score_threshold",
    "detector.min_face_size",
    "classifier.rate_hz",
    "classifier.emotion_min_face",
    "classifier.emotion_min_sharpness",
    "tracker.",
    "display.",
    "mqtt.stats_interval_s",
)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """`{"camera.width": 640, ...}` for every leaf key."""
    flat: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            flat.update(flatten(value, f"{prefix}{item.name}."))
        else:
            flat[f"{prefix}{item.name}"] = value
    return flat


def is_reloadable(path: str) -> bool:
    return any(path == key or (key.endswith(".") and path.startswith(key)) for key in RELOADABLE)


@dataclass(slots=True)
class Reload:
    """The outcome of comparing a running config with a re-read file."""

    config: Config  # the running config with every reloadable change applied
    applied: dict[str, tuple[Any, Any]]  # path -> (old, new)
    ignored: dict[str, tuple[Any, Any]]  # changes that need a restart


def merge_reload(running: Config, new: Config) -> Reload:
    old_flat, new_flat = flatten(running), flatten(new)
    changes = {
        path: (old_flat[path], new_flat[path])
        for path in old_flat
        if old_flat[path] != new_flat[path]
    }
    applied = {path: change for path, change in changes.items() if is_reloadable(path)}
    ignored = {path: change for path, change in changes.items() if path not in applied}
    merged = copy.deepcopy(running)
    for path, (_, value) in applied.items():
        *sections, key = path.split(".")
        target = merged
        for section in sections:
            target = getattr(target, section)
        setattr(target, key, value)
    return Reload(merged, applied, ignored)


# --- the shipped file -----------------------------------------------------------------------
# `config/edge-agent.toml` is rendered from these dataclasses and the notes below, and a test
# compares the two, so the shipped file cannot drift from what the loader accepts.
# Regenerate it with `python -m edge_agent.cli.config template > config/edge-agent.toml`.

SECTION_NOTES: dict[str, str] = {
    "camera": "Where frames come from. The pipeline always takes the newest frame; older ones "
    "are dropped and counted.",
    "detector": "Face detection.",
    "classifier": "Emotion, age and gender, per tracked face.",
    "tracker": "Following faces from frame to frame (reloadable with SIGHUP).",
    "models": "Model files, checked against models/manifest.json on every load.",
    "mqtt": "The broker. No secret lives in this file: the password is read from "
    "password_file when the agent starts.",
    "state": "Persistent state (the MQTT outbox).",
    "display": "A small local panel. Every key here is reloadable with SIGHUP.",
    "dashboard": "`edge-agent dashboard`, the web page fed by MQTT (docs/dashboard.md); it "
    "reads the [mqtt] keys above to reach the broker.",
}

NOTES: dict[str, str] = {
    "device_id": "Names this device in MQTT topics and Home Assistant; empty: the host name.",
    "accelerator": '"auto" uses a Coral Edge TPU when present, else the CPU; "edgetpu" '
    "fails without one.",
    "log_level": "Reloadable with SIGHUP.",
    "camera.source": '"auto" (picamera2 if installed, else the first /dev/video*), '
    '"picamera2", "/dev/videoN", a video file, a folder of images, or an '
    "rtsp://, http:// or https:// URL.",
    "camera.loop": "Replay a file or folder forever; without it `run` ends at its end. A looping "
    "file that is deleted is a lost camera (reopened with back-off) until it is back.",
    "camera.realtime": "Pace a file at its own frame rate, dropping frames when inference is "
    "slower; false processes every frame as fast as possible.",
    "camera.max_pixels": "The most pixels a decoded image or video frame may have (40 MP: a "
    "24 MP photo fits, and one frame takes 120 MB); larger files are refused from their header "
    "(exit 65), before decoding, so a small file of huge size cannot exhaust the memory.",
    "camera.width": "Requested size and rate of a camera (picamera2, V4L2).",
    "detector.model": '"multiscale" (the short-range model as a scale pyramid: faces from '
    'close-ups down to ~20 px wide in 640x480), "short_range" (one pass, faces within ~2 m), '
    '"full_range", or the path of an SSD .tflite face detector.',
    "detector.scans_per_frame": "multiscale: pyramid passes per frame, besides one look at "
    "each known face; more find new far faces sooner and cost a model run each.",
    "detector.score_threshold": "Least detection confidence (reloadable).",
    "detector.min_face_size": "Smallest face side in pixels (reloadable).",
    "classifier.level_faces": "Rotate tilted faces upright before classifying.",
    "classifier.rate_hz": "Classifications per second per face; 0 classifies every frame "
    "(reloadable).",
    "classifier.emotion_model": '"faceapi" (face-api.js expression net, 112x112 colour; the '
    'more accurate on real photos) or "mini_xception" (64x64 grey, FER-2013; about 3x cheaper).',
    "classifier.emotion_min_face": "Faces narrower than this (pixels), or turned away, show "
    '"uncertain" instead of an emotion (reloadable).',
    "classifier.emotion_min_sharpness": "Faces whose crop keeps less fine detail than this "
    '(blurred by motion or focus) show "uncertain"; 0 turns the check off. Sharp faces score '
    "0.02-0.2 (reloadable).",
    "tracker.confirm_hits": "Frames a new face must be seen on before it is announced "
    "(face_appeared) and classified; a shorter flicker is neither (reloadable).",
    "tracker.emotion_min_confidence": "Smoothed probability the leading emotion needs to be "
    'shown; below it the face is "uncertain" (reloadable).',
    "models.dir": "Empty: the models/ folder installed with edge-agent.",
    "models.num_threads": "CPU threads per model.",
    "models.edgetpu_device": 'Which Coral Edge TPU: "usb" or "pci" (the first of that kind), '
    '"usb:N", "pci:N", ":N" (the N-th, counting from 0); empty: the first found.',
    "models.edgetpu_probe_timeout_s": "Before the Edge TPU is used, a test process loads its "
    "runtime and runs each _edgetpu model once, compared with the CPU; past this many seconds "
    'it counts as hung. A crash, a hang or wrong results mean the CPU under accelerator = "auto" '
    'and exit 69 under "edgetpu".',
    "mqtt.client_id": "Empty: edge-agent-<device id>. At most 256 bytes of UTF-8, no control "
    "characters (brokers must accept 23 letters and digits; most accept far more).",
    "mqtt.topic_prefix": "Topics are <prefix>/<device id>/...; may contain /, never + or #.",
    "mqtt.password_file": "A file holding the broker password (needs username); it must be a "
    "readable file whenever the config is loaded. Empty: EDGE_AGENT_MQTT_PASSWORD.",
    "mqtt.stats_interval_s": "Seconds between stats messages (reloadable).",
    "state.dir": "Must be writable by the service (systemd's StateDirectory).",
    "display.kind": '"none" disables the panel.',
    "dashboard.listen": "HOST:PORT the page is served on. An address other than loopback "
    "(127.0.0.1, ::1, localhost) needs password_file.",
    "dashboard.password_file": "A file holding the password the page asks for (HTTP Basic, "
    "any user name); it must be a readable file whenever the config is loaded.",
}


@functools.cache
def source_notes(cls: type[Any]) -> dict[str, str]:
    """The comments written beside (or just above) each field in this module's source, so a
    field documented where it is declared is documented in the shipped file too."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            code_lines.add(token.start[0])
    notes: dict[str, str] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        match = re.match(r"\s+(\w+)\s*:", line)
        if not match:
            continue
        above: list[str] = []
        previous = number - 1
        while previous in comments and previous not in code_lines:
            above.insert(0, comments[previous])
            previous -= 1
        parts = [*above, comments.get(number, "")] if number in code_lines else above
        text = " ".join(part for part in parts if part)
        if text:
            notes[match[1]] = text
    return notes


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot render {value!r} as TOML")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _choices_and_range(item: dataclasses.Field[Any], hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(_toml_value(v) for v in typing.get_args(hint))
    low, high = item.metadata.get("low"), item.metadata.get("high")
    if low is not None and high is not None:
        return f"{_number(low)} to {_number(high)}"
    return ""


def render_toml(config: Config, *, notes: bool = False) -> str:
    """The config as TOML: every key, in declaration order; with notes, the shipped file."""
    lines: list[str] = []
    if notes:
        lines += [
            "# edge-agent configuration: every option, set to its default.",
            "# Installed as /etc/edge-agent/config.toml. Check an edited copy with",
            "#   edge-agent config check /etc/edge-agent/config.toml",
            "# and reload the tunables of a running daemon with",
            "#   systemctl reload edge-agent",
            "",
        ]

    def emit(obj: Any, prefix: str) -> None:
        hints = typing.get_type_hints(type(obj))
        sections = []
        for item in dataclasses.fields(obj):
            value = getattr(obj, item.name)
            if dataclasses.is_dataclass(value):
                sections.append((item.name, value))
                continue
            path = f"{prefix}{item.name}"
            if notes:
                extra = _choices_and_range(item, hints[item.name])
                note = NOTES.get(path) or source_notes(obj.__class__).get(item.name, "")
                note = note[:1].upper() + note[1:]
                text = " ".join(part for part in (note, f"({extra})" if extra else "") if part)
                lines.extend(f"# {line}" for line in textwrap.wrap(text, 96))
            lines.append(f"{item.name} = {_toml_value(value)}")
        for name, value in sections:
            lines.append("")
            if notes and name in SECTION_NOTES:
                lines.extend(f"# {line}" for line in textwrap.wrap(SECTION_NOTES[name], 96))
            lines.append(f"[{prefix}{name}]")
            emit(value, f"{prefix}{name}.")

    emit(config, "")
    return "\n".join(lines) + "\n"
