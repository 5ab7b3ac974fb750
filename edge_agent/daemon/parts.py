"""Building the appliance's parts from a config: pipeline, camera, publisher, display.

Each opener logs what it opened and raises EdgeAgentError with one line when it cannot;
only a missing display is tolerated (detection and MQTT matter more than the panel).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_agent.capture.camera import Capture
from edge_agent.config import Config
from edge_agent.daemon.host import board_model
from edge_agent.display import Display, open_display
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.publish import MqttPublisher
from edge_agent.vision.pipeline import Pipeline

log = logging.getLogger("edge_agent.daemon")


def open_pipeline(config: Config) -> Pipeline:
    started = time.monotonic()
    pipeline = Pipeline(config)
    in_use = pipeline.accelerator.in_use
    log.info(
        "models loaded in %.1f s on %s",
        time.monotonic() - started,
        in_use,
        extra={"ACCELERATOR": in_use},
    )
    return pipeline


def open_capture(config: Config, announce: Callable[[str], object]) -> Capture:
    capture = Capture(config.camera)
    announce(f"opening camera {capture.spec.describe()}")
    capture.start()
    mode = (
        "paced at its own rate"
        if capture.paced
        else "every frame"
        if capture.mailbox.lossless
        else "newest frame only"
    )
    log.info("camera %s (%s)", capture.spec.describe(), mode)
    return capture


def open_publisher(
    config: Config, accelerator: str, stats: dict[str, object]
) -> MqttPublisher | None:
    if not config.mqtt.enabled:
        return None
    publisher = MqttPublisher(config, accelerator=accelerator, hardware=board_model())
    publisher.start(stats, hold_online=True)  # the supervisor announces it
    return publisher


def open_panel(config: Config, *, keep_last_picture: bool = False) -> tuple[Display | None, str]:
    """The display, started; or None and the fault to show when the panel is missing."""
    if config.display.kind == "none":
        return None, ""
    try:
        display = open_display(config.display, keep_last_picture=keep_last_picture)
    except ConfigError:
        raise
    except EdgeAgentError as error:  # a missing panel must not stop detection
        log.error("display %s unavailable: %s", config.display.kind, error)
        return None, f"display: {error}"
    if display is not None:
        display.start()
    return display, ""
