"""Opening a panel: every kind is a luma device, its driver imported only when chosen.

The OLEDs come from luma.oled over I2C (smbus2), the ST7789 from luma.lcd over SPI
(spidev and the Pi's GPIO for D/C, reset and backlight), a TFT or HDMI screen through
luma.core's linux_framebuffer, and the png kind is luma.core's dummy device that also
writes each shown image to a file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from luma.core.device import dummy

from edge_agent.config import DisplayConfig
from edge_agent.errors import EX_UNAVAILABLE, EdgeAgentError

OLED_KINDS = ("ssd1306", "sh1106")
SPI_HZ = 32_000_000  # a 240x240 RGB frame in ~45 ms; the luma default (8 MHz) takes ~170 ms

# scripts/install.sh installs these; the hints are for a checkout run by hand.
_INSTALL_HINTS = {
    "luma.oled": "pip install -e '.[display]' in the checkout's venv",
    "luma.lcd": "pip install -e '.[display]' in the checkout's venv",
    "spidev": "pip install -e '.[display-spi]' (or apt install python3-spidev)",
    "RPi": "pip install -e '.[display-spi]' (or apt install python3-rpi-lgpio)",
    "smbus2": "pip install smbus2",
}


class DisplayError(EdgeAgentError):
    """The configured panel cannot be driven: its driver, bus or device is unavailable."""

    exit_code = EX_UNAVAILABLE


class PngDevice(dummy):
    """luma's dummy device that also writes what it shows to `path`, atomically."""

    def __init__(self, path: Path, width: int, height: int, rotate: int, mode: str) -> None:
        super().__init__(width=width, height=height, rotate=rotate, mode=mode)
        self.path = path

    def display(self, image: Any) -> None:
        super().display(image)
        handle, temporary = tempfile.mkstemp(
            prefix=".display-", suffix=".png", dir=self.path.parent
        )
        try:
            with os.fdopen(handle, "wb") as out:
                self.image.save(out, format="PNG")
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def framebuffer_path(config: DisplayConfig) -> str:
    """`path` when it names a /dev/fbN, else $FRAMEBUFFER, else /dev/fb0."""
    if config.path.startswith("/dev/fb"):
        return config.path
    return os.environ.get("FRAMEBUFFER", "/dev/fb0")


def _where(config: DisplayConfig) -> str:
    if config.kind in OLED_KINDS:
        return f"I2C bus {config.bus} (/dev/i2c-{config.bus}), address 0x{config.address:02X}"
    if config.kind == "st7789":
        return f"SPI bus {config.bus} (/dev/spidev{config.bus}.0)"
    if config.kind == "framebuffer":
        return framebuffer_path(config)
    return config.path


def _open(config: DisplayConfig) -> Any:
    kind, size = config.kind, {"width": config.width, "height": config.height}
    if kind == "png":
        path = Path(config.path)
        if not path.parent.is_dir():
            raise DisplayError(
                f"display.path = {config.path!r}: folder {path.parent} does not exist"
            )
        return PngDevice(
            path, config.width, config.height, config.rotation, "RGB" if config.color else "1"
        )
    if kind in OLED_KINDS:
        import luma.oled.device as oled
        from luma.core.interface.serial import i2c

        device = getattr(oled, kind)(
            i2c(port=config.bus, address=config.address), rotate=config.rotation, **size
        )
        device.contrast(config.contrast)
        return device
    if kind == "st7789":
        import luma.lcd.device as lcd
        from luma.core.interface.serial import spi

        serial = spi(port=config.bus, device=0, bus_speed_hz=SPI_HZ)
        return lcd.st7789(serial, rotate=config.rotation, **size)
    if kind == "framebuffer":
        from luma.core.device import linux_framebuffer

        # (display.rotation is 0 here: the config refuses a rotated framebuffer)
        return linux_framebuffer(framebuffer_path(config))
    raise DisplayError(f"display.kind = {kind!r}: no such panel")


def open_device(config: DisplayConfig) -> Any:
    """The luma device for `config`, or a DisplayError that says what to fix."""
    import luma.core.error

    kind = config.kind
    try:
        return _open(config)
    except ImportError as error:
        parts = (error.name or "a driver").split(".")
        name = ".".join(parts[:2]) if parts[0] == "luma" else parts[0]
        hint = _INSTALL_HINTS.get(name, "pip install -e '.[display]' in the checkout's venv")
        raise DisplayError(
            f"display.kind = {kind!r} needs {name}, which is not installed: {hint}"
        ) from None
    except luma.core.error.DevicePermissionError as error:
        raise DisplayError(
            f"display.kind = {kind!r}: no permission for {_where(config)} "
            f"({error}); add the service user to the i2c/spi/gpio/video "
            "group"
        ) from None
    except luma.core.error.Error as error:
        raise DisplayError(
            f"display.kind = {kind!r}: no panel at {_where(config)} ({error}); "
            "check the wiring and that the bus is enabled (raspi-config "
            "→ Interface Options)"
        ) from None
    except PermissionError as error:
        raise DisplayError(
            f"display.kind = {kind!r}: no permission for {_where(config)} ({error.strerror})"
        ) from None
    except OSError as error:
        what = "not found" if error.errno == errno.ENOENT else error.strerror
        raise DisplayError(f"display.kind = {kind!r}: {_where(config)}: {what}") from None
    except RuntimeError as error:  # RPi.GPIO off a Pi: "can only be run on a Raspberry Pi"
        raise DisplayError(f"display.kind = {kind!r}: GPIO unavailable ({error})") from None
