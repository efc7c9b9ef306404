"""WAL checkpoints off the commit path: the thread does what SQLite's autocheckpoint did."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from serving.sqlite_wal import WalCheckpointer, connect_wal, manual_checkpoints


def _connect(path: Path) -> sqlite3.Connection:
    con = connect_wal(path, "normal", timeout_s=5.0)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    return con


def _write(con: sqlite3.Connection, rows: int) -> None:
    con.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    for _ in range(rows):
        con.execute("INSERT INTO t (v) VALUES (?)", (bytes(512),))  # one commit each


@pytest.mark.parametrize("checkpointer", [False, True])
def test_only_the_checkpointer_moves_the_wal_into_the_database(tmp_path, checkpointer):
    path = tmp_path / "x.db"
    writer = _connect(path)
    manual_checkpoints(writer)
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    started = path.stat().st_size
    thread = (
        WalCheckpointer(lambda: _connect(path), 0.01, "test-checkpoint") if checkpointer else None
    )
    _write(writer, 400)
    deadline = time.monotonic() + 5
    while checkpointer and path.stat().st_size == started and time.monotonic() < deadline:
        time.sleep(0.01)
    grew = path.stat().st_size > started
    assert grew is checkpointer  # without it nothing reaches the database file (no commit stalls)
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 400  # WAL reads see all
    if thread is not None:
        thread.close()
        assert not thread._thread.is_alive()
    writer.close()


def test_interval_must_be_positive(tmp_path) -> None:
    with pytest.raises(ValueError, match="positive"):
        WalCheckpointer(lambda: _connect(tmp_path / "x.db"), 0, "bad")
