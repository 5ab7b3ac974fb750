"""The durable outbox on its own: order, persisted sequence numbers, bounds, recovery."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import jsonschema
import pytest

from edge_agent.errors import ConfigError
from edge_agent.publish.outbox import Outbox


def _payloads(n: int) -> list[dict]:
    return [{"n": i, "pad": "x" * 100} for i in range(n)]


def _seqs(outbox: Outbox) -> list[int]:
    return [json.loads(payload)["seq"] for _, _, payload in outbox.read(0, 10_000)]


def test_rows_come_back_in_order_with_consecutive_seq_and_go_when_deleted(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.sqlite3")
    assert outbox.append("a/events", _payloads(3), seq_key="dev") == [1, 2, 3]
    assert outbox.append("a/events", _payloads(2), seq_key="dev") == [4, 5]
    rows = outbox.read(0, 100)
    assert [row[1] for row in rows] == ["a/events"] * 5
    assert _seqs(outbox) == [1, 2, 3, 4, 5]
    assert outbox.depth == 5 and outbox.size_bytes == sum(len(r[1]) + len(r[2]) for r in rows)
    assert [row[0] for row in outbox.read(rows[1][0], 2)] == [rows[2][0], rows[3][0]]
    outbox.delete([rows[0][0], rows[2][0], 999_999])
    assert _seqs(outbox) == [2, 4, 5] and outbox.depth == 3
    outbox.close()


def test_seq_and_backlog_survive_a_reopen_and_keys_are_separate(tmp_path: Path):
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path)
    outbox.append("t", _payloads(4), seq_key="dev")
    outbox.delete([row[0] for row in outbox.read(0, 4)])
    outbox.append("t", _payloads(1), seq_key="dev")
    outbox.close()
    again = Outbox(path)
    assert again.depth == 1 and _seqs(again) == [5]
    assert again.append("t", _payloads(1), seq_key="dev") == [6]
    assert again.append("t", _payloads(1), seq_key="other") == [1]
    assert again.last_seq("dev") == 6
    again.close()


def test_an_unclosed_outbox_still_has_every_committed_row(tmp_path: Path):
    """What a SIGKILL leaves: the WAL was never checkpointed, the connection never closed."""
    path = tmp_path / "o.sqlite3"
    first = Outbox(path, sync="normal")
    first.append("t", _payloads(7), seq_key="dev")
    assert Path(f"{path}-wal").exists()
    second = Outbox(path)  # a new process would open it like this
    assert _seqs(second) == list(range(1, 8))
    second.close()


def test_count_bound_drops_the_oldest_and_counts_them(tmp_path: Path):
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_events=10)
    for _ in range(4):
        outbox.append("t", _payloads(4), seq_key="dev")
    assert outbox.depth == 10 and outbox.dropped == 6
    assert _seqs(outbox) == list(range(7, 17))
    outbox.close()
    reopened = Outbox(path, max_events=10)
    assert reopened.dropped == 6 and reopened.depth == 10
    reopened.close()


def test_byte_bound_drops_the_oldest(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=10_000)
    for _ in range(20):
        outbox.append("t", _payloads(5), seq_key="dev")
    assert outbox.size_bytes <= 10_000
    seqs = _seqs(outbox)
    assert seqs == list(range(100 - len(seqs) + 1, 101))  # the newest, contiguous
    assert outbox.dropped == 100 - len(seqs) > 0
    outbox.close()


def test_a_corrupt_file_is_moved_aside_and_a_new_outbox_starts(tmp_path: Path, caplog):
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path)
    assert outbox.append("t", _payloads(3), seq_key="dev") == [1, 2, 3]
    outbox.close()
    path.write_bytes(b"this is not a database at all" * 100)  # a damaged SD card, say
    started = int(time.time() * 1000)
    outbox = Outbox(path)
    (seq,) = outbox.append("t", _payloads(1), seq_key="dev")
    # never a number a consumer has seen before: above the time in milliseconds
    assert seq > started > 3
    assert outbox.append("t", _payloads(1), seq_key="dev") == [seq + 1]
    outbox.close()
    reopened = Outbox(path)
    assert reopened.last_seq("dev") == seq + 1  # and it is persisted
    reopened.close()
    assert [p.name for p in tmp_path.glob("o.sqlite3.corrupt-*")]
    assert "moved aside" in caplog.text


def test_an_unwritable_state_dir_is_a_config_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"state\.dir"):
        Outbox(blocker / "sub" / "o.sqlite3")


def test_a_closed_outbox_raises_a_sqlite_error(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.close()
    outbox.close()  # idempotent
    with pytest.raises(sqlite3.Error):
        outbox.append("t", _payloads(1), seq_key="dev")


def test_the_outbox_is_private_whatever_the_umask(tmp_path: Path):
    """Run by hand (umask 022, not the unit's 0077) it still holds per-person data 0600."""
    old = os.umask(0o022)
    try:
        outbox = Outbox(tmp_path / "state" / "outbox.sqlite")
        outbox.append("t", _payloads(2), seq_key="events")
        assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
        files = sorted((tmp_path / "state").iterdir())
        assert {p.name for p in files} >= {"outbox.sqlite", "outbox.sqlite-wal"}
        for file in files:
            assert file.stat().st_mode & 0o777 == 0o600, file
        outbox.close()
    finally:
        os.umask(old)


def test_a_full_disk_is_said_in_plain_words_with_what_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """SQLITE_FULL for real: the database file may not grow past its current pages."""
    from helpers.mqtt import scene

    from edge_agent.publish.feed import ResultFeed
    from edge_agent.publish.messages import Topics, load_schema, stats_payload

    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    db = outbox._conn()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    topics = Topics.of("edge-agent", "dev")
    feed = ResultFeed(outbox, topics, "dev", lambda _: None, lambda _: None, lambda: None)
    stored_events = 0
    for result in scene(200):
        feed.consume(result, time.time())  # type: ignore[arg-type]
        stored_events += len(result.events)  # type: ignore[attr-defined]
    assert stored_events and feed.store_failures > 0
    assert outbox.error == "disk full"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors  # once, not once a frame
    assert "disk full" in errors[0] and "event(s) not stored" in errors[0]
    assert "rollback" not in caplog.text and "no transaction" not in caplog.text
    stats = stats_payload(
        {},
        device="dev",
        ts="2025-05-01T12:00:00.000Z",
        accelerator="cpu",
        outbox_depth=outbox.depth,
        events_dropped=feed.store_failures,
        outbox_error=outbox.error,
    )
    jsonschema.validate(stats, load_schema("stats"))
    assert stats["outbox_error"] == "disk full"

    db.execute("PRAGMA max_page_count = 1073741823")  # room again
    for result in scene(20, start=200):
        feed.consume(result, time.time())  # type: ignore[arg-type]
    assert outbox.error is None and outbox.depth > 0
    assert "storing again" in caplog.text
    outbox.close()
