"""The SQLite files the server writes: opened the same way, WAL checkpoints off the commit path.

SQLite's automatic checkpoint runs inside whichever commit crosses `wal_autocheckpoint`
(1000 pages): that commit copies the WAL into the database and fsyncs it. For a store used
on the request path (caps) that was a 5-70 ms stall of every request in flight, every few
hundred commits. With `WalCheckpointer` the writing connection turns automatic checkpoints
off and a thread checkpoints (PASSIVE: never blocks a writer or a reader) every interval.

A PASSIVE checkpoint never shrinks the WAL file: SQLite rewinds the WAL only when a writer
finds it fully checkpointed, which under continuous traffic never happens (a 3-minute soak
left a 1.33 GB decision-log WAL, issue 11). With `wal_limit_mb` the checkpointer runs a
TRUNCATE checkpoint once the WAL passes the limit (it waits for the writer's current
transaction and briefly holds writers back, on its own thread) and `journal_size_limit`
trims the file whenever it is rewound, so the WAL stays near the limit.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SIZE_POLL_S = 0.01


def wal_file(path: Path) -> Path:
    """The WAL file SQLite keeps beside a database."""
    return Path(f"{path}-wal")


def connect_wal(
    path: Path, synchronous: str, timeout_s: float, wal_limit_mb: float | None = None
) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) in WAL mode, usable from any
    thread (callers serialise access), with the given `synchronous` level; `wal_limit_mb`
    caps the WAL file left after a checkpoint rewinds it (`journal_size_limit`)."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout_s)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous.upper()}")
    if wal_limit_mb is not None:
        con.execute(f"PRAGMA journal_size_limit={int(wal_limit_mb * 1024 * 1024)}")
    return con


class WalCheckpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` every `interval_s` on its own connection, and
    a TRUNCATE checkpoint when the WAL file at `wal_path` exceeds `wal_limit_mb`."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval_s: float,
        name: str,
        *,
        wal_path: Path | None = None,
        wal_limit_mb: float | None = None,
        writer_lock: threading.Lock | None = None,
    ):
        """`writer_lock`: the lock this process's writer holds per transaction; a TRUNCATE
        checkpoint takes it, so a writer that commits back to back cannot starve it (SQLite's
        busy handler only polls)."""
        if interval_s <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval_s}")
        if wal_limit_mb is not None and wal_path is None:
            raise ValueError("wal_limit_mb needs the wal_path to watch")
        self._connect = connect
        self._interval_s = interval_s
        self._wal_path = wal_path
        self._limit = None if wal_limit_mb is None else wal_limit_mb * 1024 * 1024
        self._writer_lock = writer_lock
        self.truncations = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _over_limit(self) -> bool:
        if self._limit is None or self._wal_path is None:
            return False
        try:
            return self._wal_path.stat().st_size > self._limit
        except FileNotFoundError:
            return False

    def _run(self) -> None:
        # With a limit the WAL's size is looked at every SIZE_POLL_S (a stat), so a burst of
        # commits overshoots the limit by at most what it writes in that time.
        poll = self._interval_s if self._limit is None else min(self._interval_s, SIZE_POLL_S)
        con = self._connect()
        last = time.monotonic()
        try:
            while not self._stop.wait(poll):
                try:
                    if self._over_limit():
                        with self._writer_lock or contextlib.nullcontext():
                            busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                        self.truncations += busy == 0
                        last = time.monotonic()
                    elif time.monotonic() - last >= self._interval_s:
                        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        last = time.monotonic()
                except sqlite3.Error as exc:  # locked by another process: try next time
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            con.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def manual_checkpoints(con: sqlite3.Connection) -> None:
    """Turn a connection's automatic checkpoints off (a `WalCheckpointer` does them)."""
    con.execute("PRAGMA wal_autocheckpoint=0")
