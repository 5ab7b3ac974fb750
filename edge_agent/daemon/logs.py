"""Logging for the daemon: the journal with structured fields under systemd, stderr elsewhere.

Under systemd our stderr already lands in the journal, but as flat text. When it does (the
`$JOURNAL_STREAM` device and inode match stderr) and journald's socket exists, records are
sent with the native protocol instead, so `journalctl -u edge-agent FPS=...` and
`-p warning` work: systemd-python's JournalHandler where installed, else a small handler
speaking the same datagram protocol. The socket is checked first because systemd-python
drops messages silently when it is absent.

A record's extra attributes whose names are journal field names (upper case, digits and
'_') become fields: `log.info("stats", extra={"FPS": 12.5})`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys
from pathlib import Path
from typing import Any

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
IDENTIFIER = "edge-agent"
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_FIELD = re.compile(r"[A-Z0-9][A-Z0-9_]*")
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    """syslog priority of a logging level (crit 2, err 3, warning 4, info 6, debug 7)."""
    for level, value in _PRIORITY:
        if levelno >= level:
            return value
    return 7


def stderr_is_journal(environ: Any = None) -> bool:
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(stream) and stream == f"{stat.st_dev}:{stat.st_ino}"


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """The structured fields of one record, beyond MESSAGE."""
    fields = {
        "PRIORITY": str(priority(record.levelno)),
        "SYSLOG_IDENTIFIER": IDENTIFIER,
        "LOGGER": record.name,
        "THREAD_NAME": record.threadName or "",
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
    }
    for key, value in record.__dict__.items():
        if _FIELD.fullmatch(key):
            fields[key] = str(value)
    return fields


class NativeJournalHandler(logging.Handler):
    """journald's native protocol: one datagram of `KEY=value` lines per record.

    Values with a newline use the binary form (KEY, newline, 64-bit little-endian length,
    value, newline), as systemd.io/JOURNAL_NATIVE_PROTOCOL describes.
    """

    def __init__(self, address: Path = JOURNAL_SOCKET, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.address = str(address)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @staticmethod
    def encode(fields: dict[str, str]) -> bytes:
        parts = []
        for key, value in fields.items():
            data = value.encode("utf-8", "replace")
            if b"\n" in data:
                parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
            else:
                parts.append(key.encode() + b"=" + data + b"\n")
        return b"".join(parts)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            fields = {"MESSAGE": message, **journal_fields(record)}
        except Exception:
            self.handleError(record)
            return
        try:
            self._socket.sendto(self.encode(fields), self.address)
        except OSError:  # journald restarting or flooded: the line still reaches stderr
            sys.stderr.write(f"<{fields['PRIORITY']}>{message}\n")

    def close(self) -> None:
        self._socket.close()
        super().close()


def _systemd_python_handler() -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    return JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)


def setup(
    level: str | int = "info", *, target: str | None = None, journal_socket: Path | None = None
) -> str:
    """Route the root logger to the journal or stderr; return which one ("journal"/"stderr").

    `target` is "auto" (the default, or `$EDGE_AGENT_LOG`), "journal" or "stderr".
    """
    target = target or os.environ.get("EDGE_AGENT_LOG", "auto")
    address = journal_socket or Path(os.environ.get("EDGE_AGENT_JOURNAL_SOCKET", JOURNAL_SOCKET))
    use_journal = address.is_socket() and (
        target == "journal" or (target == "auto" and stderr_is_journal())
    )
    handler: logging.Handler
    if use_journal:
        custom = address != JOURNAL_SOCKET
        handler = (None if custom else _systemd_python_handler()) or NativeJournalHandler(address)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    set_level(level)
    return "journal" if use_journal else "stderr"


def set_level(level: str | int) -> None:
    value = LEVELS.get(level, logging.INFO) if isinstance(level, str) else level
    logging.getLogger().setLevel(value)
