"""The state directory belongs to one daemon: created private (0700), and locked for the
daemon's life with `flock` on `<state.dir>/lock`, which holds the owner's PID.

A second daemon on the same directory would interleave sequence numbers in one outbox and
publish as the same device; it exits at once with EX_TEMPFAIL (75) instead. The kernel drops
the lock when the process ends, however it ends, so a crash leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edge_agent.errors import ConfigError, StateDirBusy

LOCK_FILE = "lock"


def prepare_state_dir(path: Path) -> None:
    """Create the folder 0700 if missing; tighten a folder of ours that others could read
    (it holds per-person emotion, age and gender), whoever runs the daemon."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            path.chmod(0o700)
    except OSError as error:
        raise ConfigError(
            f"state.dir = {str(path)!r}: cannot create ({error.strerror or error})"
        ) from None


class StateDirLock:
    """An exclusive lock on one state directory, held until `release` or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        prepare_state_dir(self.path)
        lock = self.path / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise ConfigError(
                f"state.dir = {str(self.path)!r}: cannot create {LOCK_FILE} "
                f"({error.strerror or error})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirBusy(f"state dir {self.path} in use by PID {owner}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
