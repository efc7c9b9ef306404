"""The SQLite files the server writes: opened the same way, WAL checkpoints off the commit path.

SQLite's automatic checkpoint runs inside whichever commit crosses `wal_autocheckpoint`
(1000 pages): that commit copies the WAL into the database and fsyncs it. For a store used
on the event loop (caps) that was a 5-70 ms stall of every request in flight, every few
hundred commits. With `WalCheckpointer` the writing connection turns automatic checkpoints
off and a thread checkpoints (PASSIVE: never blocks a writer or a reader) every interval.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path


def connect_wal(path: Path, synchronous: str, timeout_s: float) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) in WAL mode, usable from any
    thread (callers serialise access), with the given `synchronous` level."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout_s)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous.upper()}")
    return con


class WalCheckpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` every `interval_s` on its own connection."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval_s: float, name: str):
        if interval_s <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval_s}")
        self._connect = connect
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        con = self._connect()
        try:
            while not self._stop.wait(self._interval_s):
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            con.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def manual_checkpoints(con: sqlite3.Connection) -> None:
    """Turn a connection's automatic checkpoints off (a `WalCheckpointer` does them)."""
    con.execute("PRAGMA wal_autocheckpoint=0")
