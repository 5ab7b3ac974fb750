"""What the device says about itself: its board, CPU temperature and the address it is
reached at."""

from __future__ import annotations

import fcntl
import platform
import socket
import struct
from pathlib import Path

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
BOARD_MODEL = Path("/proc/device-tree/model")  # e.g. "Raspberry Pi 4 Model B Rev 1.5"
SIOCGIFADDR = 0x8915


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def board_model(path: Path = BOARD_MODEL) -> str:
    """The board's name from the device tree (Raspberry Pi and other ARM boards), else the
    machine architecture; Home Assistant shows it as the device's hardware version."""
    try:
        model = path.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        model = ""
    return model or platform.machine()


def local_ip() -> str | None:
    """The IPv4 address of the interface that holds the default route (read locally from
    /proc and the interface; nothing is sent)."""
    try:
        with open("/proc/net/route") as routes:
            next(routes)
            interface = next(
                (line.split()[0] for line in routes if line.split()[1] == "00000000"), None
            )
        if interface is None:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            request = struct.pack("256s", interface.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
        return socket.inet_ntoa(answer[20:24])
    except (OSError, StopIteration, IndexError):
        return None
