"""The systemd notify protocol: READY, WATCHDOG, STATUS, RELOADING and STOPPING.

systemd-python's `systemd.daemon.notify` is used where it is installed (on a Pi it comes with
the `python3-systemd` package through the venv's system site packages); otherwise the same
datagram is sent by hand to `$NOTIFY_SOCKET`, a path or, with a leading '@', a Linux
abstract socket. Outside systemd (no `$NOTIFY_SOCKET`) every call is a cheap no-op.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _systemd_notify() -> Callable[[str], bool] | None:
    try:
        daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    notify = getattr(daemon, "notify", None)
    return notify if callable(notify) else None


def socket_address(value: str) -> str | bytes:
    """`@name` is the abstract socket "\\0name"; anything else is a filesystem path."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def _one_line(text: str) -> str:
    return text.replace("\n", " ")


class Notifier:
    """Talks to the service manager named by the environment, if there is one."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, use_systemd_python: bool = True
    ) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        self.watchdog_usec = self._watchdog_usec(env)
        self._library = _systemd_notify() if use_systemd_python and self.address else None
        self._socket: socket.socket | None = None
        self._warned = False

    @staticmethod
    def _watchdog_usec(env: Mapping[str, str]) -> int | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):  # meant for another process of the service
            return None
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` lines as one datagram; False (and one warning) when it fails."""
        if self.address is None:
            return False
        message = "\n".join(assignments)
        try:
            if self._library is not None:
                return bool(self._library(message))
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(message.encode(), socket_address(self.address))
            return True
        except OSError as error:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address, error)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        # one line: the protocol ends each field at a newline
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
