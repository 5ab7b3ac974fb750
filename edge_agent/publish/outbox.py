"""The durable outbox: every event is committed to sqlite before it is sent, and deleted
only when the broker acknowledges it.

One sqlite3 file in WAL mode in the state directory. `append` runs on the inference thread:
one short transaction a frame (insert the frame's events, advance the persisted sequence
number, trim the oldest rows when over the bounds). With `synchronous=FULL` that commit is
fsynced, so an event survives a power cut; `NORMAL` survives a crash of the process only.
The sender reads rows in id order after a cursor and deletes acknowledged ids in batches.

The sequence number lives in the same transaction as the rows, so it never repeats and
never skips, across restarts and crashes alike. One connection, guarded by a lock, serves
both threads; every statement is short.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from edge_agent.errors import ConfigError

log = logging.getLogger("edge_agent.mqtt")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_SET_META = (
    "INSERT INTO meta(key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)


# sqlite's primary result codes, in the words a user acts on; its own messages ("database
# or disk is full", and after it "cannot rollback - no transaction is active") do not say.
_PROBLEMS = {
    13: "disk full",  # SQLITE_FULL
    8: "read-only file system",  # SQLITE_READONLY
    3: "permission denied",  # SQLITE_PERM
    23: "permission denied",  # SQLITE_AUTH
    11: "database corrupt",  # SQLITE_CORRUPT
    26: "database corrupt",  # SQLITE_NOTADB
    14: "cannot open the file",  # SQLITE_CANTOPEN
    10: "input/output error",  # SQLITE_IOERR
}


def storage_problem(error: sqlite3.Error) -> str:
    """What went wrong with the outbox file, in plain words."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _PROBLEMS:
        return _PROBLEMS[code & 0xFF]
    return str(error) or type(error).__name__


class Outbox:
    """Bounded, ordered, crash-safe queue of (topic, payload) rows with a per-key sequence."""

    def __init__(
        self,
        path: Path,
        *,
        max_events: int = 100_000,
        max_bytes: int = 50_000_000,
        sync: Literal["full", "normal"] = "full",
    ) -> None:
        self.path = path
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._sync = "FULL" if sync == "full" else "NORMAL"
        self._lock = threading.Lock()
        self.error: str | None = None  # why the last append failed; None once one succeeds
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"state.dir = {str(path.parent)!r}: cannot create ({error.strerror or error})"
            ) from None
        try:
            self._db: sqlite3.Connection | None = self._open(sync)
        except sqlite3.DatabaseError as error:
            if not path.exists() or isinstance(error, sqlite3.OperationalError):
                raise ConfigError(
                    f"state.dir = {str(path.parent)!r}: cannot open the "
                    f"outbox {path.name} ({error})"
                ) from None
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            # Sequence numbers must never repeat, or consumers that drop seen numbers would
            # drop new events: the new file starts them above the time in milliseconds,
            # which no device's counter reaches. The jump also tells of the possible gap.
            floor = int(time.time() * 1000)
            log.warning(
                "outbox %s is unreadable (%s); moved aside to %s and starting a "
                "new one: sequence numbers continue from %d",
                path,
                error,
                aside.name,
                floor,
            )
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._db = self._open(sync)
            self._conn().execute(_SET_META, ("seq_floor", floor))
        row = self._conn().execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        self._dropped = self._meta("dropped")

    def _open(self, sync: str) -> sqlite3.Connection:
        # Private whoever runs us (per-person emotion, age and gender): sqlite gives the
        # -wal and -shm files the database file's own mode.
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            info = self.path.stat()
            if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                self.path.chmod(0o600)
        except OSError as error:
            raise sqlite3.OperationalError(f"{error.strerror or error}") from None
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL mode (got {mode})")
            db.execute(f"PRAGMA synchronous={self._sync}")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the outbox is closed")
        return self._db

    def _meta(self, key: str) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    @property
    def depth(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def dropped(self) -> int:
        """Events deleted unsent to keep within the bounds, since the outbox was created."""
        return self._dropped

    def last_seq(self, key: str) -> int:
        with self._lock:
            return max(self._meta(f"seq:{key}"), self._meta("seq_floor"))

    def append(self, topic: str, payloads: Sequence[dict[str, Any]], *, seq_key: str) -> list[int]:
        """Number each payload (`seq`, +1 each, persisted under `seq_key`) and store them in
        one transaction. Returns the sequence numbers given."""
        if not payloads:
            return []
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                seq = max(self._meta(f"seq:{seq_key}"), self._meta("seq_floor"))
                rows = []
                for payload in payloads:
                    seq += 1
                    payload["seq"] = seq
                    data = json.dumps(payload, separators=(",", ":")).encode()
                    rows.append((topic, data, len(topic) + len(data)))
                db.executemany("INSERT INTO outbox(topic, payload, size) VALUES (?, ?, ?)", rows)
                db.execute(_SET_META, (f"seq:{seq_key}", seq))
                count = self._count + len(rows)
                size = self._bytes + sum(row[2] for row in rows)
                count, size, dropped = self._trim(count, size)
                if dropped:
                    db.execute(_SET_META, ("dropped", self._dropped + dropped))
                db.execute("COMMIT")
            except BaseException as error:
                self._rollback(db)
                if isinstance(error, sqlite3.Error):
                    self.error = storage_problem(error)
                raise
            self.error = None
            self._count, self._bytes = count, size
            if dropped:
                self._dropped += dropped
                log.warning("outbox full: dropped the %d oldest unsent event(s)", dropped)
            return list(range(seq - len(rows) + 1, seq + 1))

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        """Undo a failed transaction; sqlite has already rolled back after some errors
        (SQLITE_FULL), and a second failure must not hide the first."""
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as error:
                log.debug("outbox rollback: %s", error)

    def _trim(self, count: int, size: int) -> tuple[int, int, int]:
        """Delete the oldest rows until within both bounds (inside the caller's transaction)."""
        dropped = 0
        while count > self.max_events or size > self.max_bytes:
            batch = max(count - self.max_events, 64)
            victims = (
                self._conn()
                .execute("SELECT id, size FROM outbox ORDER BY id LIMIT ?", (batch,))
                .fetchall()
            )
            if not victims:
                break
            last = None
            for row_id, row_size in victims:
                if count <= self.max_events and size <= self.max_bytes:
                    break
                count, size, dropped, last = count - 1, size - row_size, dropped + 1, row_id
            self._conn().execute("DELETE FROM outbox WHERE id <= ?", (last,))
        return count, size, dropped

    def read(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to `limit` rows with id > `after_id`, oldest first: (id, topic, payload)."""
        if limit <= 0:
            return []
        with self._lock:
            return (
                self._conn()
                .execute(
                    "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                )
                .fetchall()
            )

    def delete(self, ids: Iterable[int]) -> None:
        """Forget acknowledged rows (ids already trimmed away are ignored)."""
        ids = list(ids)
        if not ids:
            return
        with self._lock:
            db = self._conn()
            # A delete need not reach the disk before we go on: lost, it only means the
            # event is sent again. So it is committed without an fsync (the next append's
            # fsync carries it), and never makes the inference thread wait on the disk.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                freed = 0
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for (row_size,) in db.execute(
                        f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING size", chunk
                    ):
                        removed += 1
                        freed += row_size
                db.execute("COMMIT")
            except BaseException:
                self._rollback(db)
                raise
            finally:
                db.execute(f"PRAGMA synchronous={self._sync}")
            self._count -= removed
            self._bytes -= freed

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    if self._count == 0:
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._db.close()
                    self._db = None
