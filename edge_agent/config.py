"""The one config file: a typed, validated model of every option, with defaults.

Every field is declared once here with its type and bounds; loading walks the TOML against
these declarations, so an unknown key, a wrong type or an out-of-range value is reported
with its key path (`detector.score_threshold = 1.5: must be at most 1`) and exit code 78,
never silently ignored.
"""

from __future__ import annotations

import dataclasses
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_agent.errors import ConfigError

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


@dataclass(slots=True)
class DetectorConfig:
    model: str = "short_range"  # "short_range", "full_range", or a path to an SSD .tflite
    score_threshold: float = bounded(0.5, 0.0, 1.0)
    min_face_size: float = bounded(20.0, 0.0, 4096.0)


@dataclass(slots=True)
class ClassifierConfig:
    emotion: bool = True
    age: bool = True
    gender: bool = True
    level_faces: bool = True
    rate_hz: float = bounded(0.0, 0.0, 1000.0)  # per track; 0 classifies every frame


@dataclass(slots=True)
class TrackerConfig:
    match_iou: float = bounded(0.3, 0.01, 1.0)
    confirm_hits: int = bounded(2, 1, 100)
    lost_after_s: float = bounded(1.0, 0.0, 3600.0)
    smoothing_s: float = bounded(0.4, 0.0, 60.0)
    emotion_hold_s: float = bounded(0.6, 0.0, 60.0)


@dataclass(slots=True)
class ModelsConfig:
    dir: str = ""  # empty: the models/ folder shipped beside the package
    variant: Literal["float", "int8"] = "float"
    num_threads: int = bounded(2, 1, 64)


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


@dataclass(slots=True)
class StateConfig:
    dir: str = "/var/lib/edge-agent"


@dataclass(slots=True)
class DisplayConfig:
    kind: Literal["none", "ssd1306", "sh1106", "st7789", "framebuffer", "png"] = "none"
    path: str = "display.png"  # where the png kind writes
    width: int = bounded(128, 8, 4096)
    height: int = bounded(64, 8, 4096)
    color: bool = False
    bus: int = bounded(1, 0, 16)  # I2C or SPI bus number
    address: int = bounded(0x3C, 0, 0x7F)  # I2C address of an OLED
    rotation: int = bounded(0, 0, 3)  # quarter turns
    contrast: int = bounded(200, 0, 255)
    fps: float = bounded(5.0, 0.2, 60.0)
    dim_after_s: float = bounded(60.0, 0.0, 86400.0)
    night_off: str = ""  # e.g. "23:00-07:00"; empty keeps the panel on


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

    @property
    def effective_device_id(self) -> str:
        return self.device_id or socket.gethostname()


def _check_value(path: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
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
    elif hint is str and not isinstance(value, str):
        raise ConfigError(f"{path} = {value!r}: must be a string")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and value < low:
        raise ConfigError(f"{path} = {value!r}: must be at least {low}")
    if high is not None and value > high:
        raise ConfigError(f"{path} = {value!r}: must be at most {high}")
    return value


def _build(cls: type, table: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if key not in fields:
            where = f"section [{prefix[:-1]}]" if prefix else "the top level"
            known = ", ".join(fields)
            raise ConfigError(f"{path}: unknown key in {where} (known: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: must be a section [{path}]")
            values[key] = _build(hint, value, f"{path}.")
        else:
            values[key] = _check_value(path, value, hint, fields[key].metadata)
    return cls(**values)


def parse(text: str, source: str = "<config>") -> Config:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: TOML syntax error: {error}") from None
    try:
        config = _build(Config, table, "")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


def load(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config ({error})") from None
    return parse(text, str(path))


def to_dict(config: Any) -> dict[str, Any]:
    """The effective config as plain data. Secrets never live in it: the MQTT password is
    read from `password_file` or the environment only when connecting."""
    return dataclasses.asdict(config)


def load_or_default(path: str | None) -> Config:
    """The file named on the command line, else the installed one, else the defaults."""
    if path:
        return load(Path(path))
    if DEFAULT_PATH.is_file():
        return load(DEFAULT_PATH)
    return Config()
