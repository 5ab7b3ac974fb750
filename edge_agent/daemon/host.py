"""What the device says about itself: CPU temperature and the address it is reached at."""

from __future__ import annotations

import fcntl
import socket
import struct
from pathlib import Path

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
SIOCGIFADDR = 0x8915


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


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
