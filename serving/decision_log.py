"""The decision log: every decision and outcome, appended durably, joinable by decision id.

"Write before you answer": `append_decision` returns only once the row is committed
(SQLite WAL with synchronous=FULL fsyncs the WAL on commit; PostgreSQL commits with its
default synchronous_commit), so a crash after the server answered cannot lose the decision.
A single writer thread does all writes with *group commit*: whatever is queued when it wakes
goes into one transaction and one fsync, and every waiting caller is released together, so
concurrent requests share the cost of durability instead of queueing behind each other's.
Callers on an event loop (`append_*_async`) are woken once per batch and loop, not once each:
one cross-thread wake-up releases every request of a group commit.

Backends: SQLite (embedded default, under `layout.serving`), PostgreSQL (production; one
schema per deployment), memory (simulations). Reading (`decisions()`, `outcomes()`) returns
pandas frames for the efficacy report and the next training run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from serving.log_limit import LimitedLog
from serving.offloop import consume
from serving.sqlite_wal import WalCheckpointer, connect_wal, manual_checkpoints, wal_file

log = logging.getLogger(__name__)
_LIMITED = LimitedLog(log)

# name -> (sqlite type, postgres type). ts columns are epoch seconds.
DECISION_COLUMNS: dict[str, tuple[str, str]] = {
    "decision_id": ("TEXT PRIMARY KEY", "TEXT PRIMARY KEY"),
    "ts": ("REAL NOT NULL", "DOUBLE PRECISION NOT NULL"),
    "user_id": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "session_id": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "step": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "moment": ("TEXT", "TEXT"),
    "episode": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "score": ("REAL NOT NULL", "DOUBLE PRECISION NOT NULL"),
    "band": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "action": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "content": ("TEXT", "TEXT"),
    "source": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "fallback_reason": ("TEXT", "TEXT"),
    "model_version": ("TEXT", "TEXT"),
    "arm": ("TEXT", "TEXT"),
    "holdout": ("INTEGER NOT NULL", "BOOLEAN NOT NULL"),
    "would_action": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "capped": ("INTEGER NOT NULL", "BOOLEAN NOT NULL"),
    "cap_reason": ("TEXT", "TEXT"),
    "reasons": ("TEXT NOT NULL", "TEXT NOT NULL"),  # JSON list
    "signals": ("TEXT NOT NULL", "TEXT NOT NULL"),  # JSON object, the signals used
    "device": ("TEXT", "TEXT"),
    "channel": ("TEXT", "TEXT"),
    "tz": ("TEXT", "TEXT"),
    "latency_ms": ("REAL", "DOUBLE PRECISION"),
    # serving.bandit: P(chosen action | policy), the eligible actions (JSON list); a log
    # written before these existed gains them on open (`_add_missing`), NULL in old rows
    "propensity": ("REAL", "DOUBLE PRECISION"),
    "eligible_actions": ("TEXT", "TEXT"),
    # serving.rollout: the shadow model's score of the same features and its version, set
    # after the decision is committed (NULL: no shadow, or it failed / overran its budget)
    "shadow_score": ("REAL", "DOUBLE PRECISION"),
    "shadow_version": ("TEXT", "TEXT"),
}
# appended after the first release
_ADDED_COLUMNS = ("propensity", "eligible_actions", "shadow_score", "shadow_version")
OUTCOME_COLUMNS: dict[str, tuple[str, str]] = {
    "decision_id": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "outcome": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "ts": ("REAL NOT NULL", "DOUBLE PRECISION NOT NULL"),
    "logged_at": ("REAL NOT NULL", "DOUBLE PRECISION NOT NULL"),
}
_BOOL_COLUMNS = ("holdout", "capped")
_TS_COLUMNS = ("ts", "logged_at")


class DecisionLogError(RuntimeError):
    """A write could not be made durable; the caller must not acknowledge the decision."""


_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"), sort_keys=True)


def to_json(value: Any) -> str:
    """JSON text with NaN / inf written as null (strict JSON for every reader).

    One pass of the C encoder, which refuses NaN / inf; only a value holding one is walked
    in Python to null it (per decision, the walk cost more than the encoding).
    """
    try:
        return _JSON.encode(value)
    except ValueError:  # a NaN / inf somewhere
        return _JSON.encode(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _check_row(row: Mapping[str, Any], columns: Mapping[str, Any], what: str) -> tuple:
    if len(row) == len(columns):  # the usual case: exactly the columns
        try:
            return tuple([row[c] for c in columns])
        except KeyError:
            pass
    missing = [c for c in columns if c not in row and c not in _ADDED_COLUMNS]
    extra = [c for c in row if c not in columns]
    if missing or extra:
        raise ValueError(f"{what} row: missing {missing}, unknown {extra}")
    return tuple(row.get(c) for c in columns)  # later columns may be absent: NULL


class _Backend(Protocol):
    def write(self, decisions: Sequence[tuple], outcomes: Sequence[tuple]) -> None: ...

    def has_decision(self, decision_id: str) -> bool: ...

    def write_shadows(self, shadows: Sequence[tuple]) -> None:
        """`(shadow_score, shadow_version, decision_id)` onto committed decisions."""
        ...

    def delete_decisions(self, decision_ids: Sequence[str]) -> None: ...

    def delete_before(self, ts: float) -> int: ...

    def read(self, table: str, columns: Sequence[str]) -> list[tuple]: ...

    def read_since(
        self, since_ts: float, columns: Sequence[str], limit: int
    ) -> tuple[list[tuple], list[tuple]]: ...

    def close(self) -> None: ...


# Who waits for a write: a thread (concurrent Future) or a coroutine (asyncio Future).
Waiter = Future | asyncio.Future

# An entry's life: queued -> taken by the writer -> written; a caller that gives up first
# drops it (never written), or marks it abandoned in flight (deleted again once committed).
_PENDING, _TAKEN, _DONE, _DROPPED, _ABANDONED = range(5)


class _Entry:
    __slots__ = ("failed", "kind", "state", "values", "waiter")

    def __init__(self, kind: str, values: tuple, waiter: Waiter) -> None:
        self.kind = kind
        self.values = values
        self.waiter = waiter
        self.state = _PENDING
        self.failed = False


@dataclass(frozen=True)
class LogWindow:
    """A recent slice of the log: decisions (`ts` as epoch seconds) and their outcomes."""

    decisions: pd.DataFrame
    outcomes: pd.DataFrame
    truncated: bool  # the row limit was reached: older decisions of the window were left out


class DecisionLog:
    """Append decisions and outcomes durably; read them back as frames.

    `retention_s` (with `housekeeping_interval_s`) deletes decisions and outcomes older than
    that on a thread of its own (`serving.housekeeping`), so the log's disk use is bounded.
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        batch_max: int,
        threaded: bool = True,
        retention_s: float | None = None,
        housekeeping_interval_s: float = 60.0,
    ) -> None:
        self._backend = backend
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._states = threading.Lock()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()
        self._housekeeper = None
        if retention_s is not None:
            from serving.housekeeping import Housekeeper

            self._housekeeper = Housekeeper(
                lambda now: self.prune(now - retention_s), housekeeping_interval_s
            )

    # --- writing -------------------------------------------------------------------------
    def _write_inline(self, kind: str, values: tuple) -> None:
        try:
            if kind == "s":
                self._backend.write_shadows([values])
            else:
                self._backend.write(
                    [values] if kind == "d" else [], [values] if kind == "o" else []
                )
        except Exception as exc:
            raise DecisionLogError(str(exc)) from exc

    def _enqueue(self, kind: str, values: tuple, waiter: Waiter) -> _Entry:
        assert self._thread is not None
        if not self._thread.is_alive():
            raise DecisionLogError("the decision-log writer has stopped")
        entry = _Entry(kind, values, waiter)
        self._queue.put(entry)
        return entry

    def _submit(self, kind: str, values: tuple) -> Future:
        future: Future = Future()
        if self._thread is None:  # in-line (memory backend)
            try:
                self._write_inline(kind, values)
                future.set_result(None)
            except DecisionLogError as exc:
                future.set_exception(exc)
            return future
        self._enqueue(kind, values, future)
        return future

    async def _submit_async(self, kind: str, values: tuple, budget_s: float | None) -> None:
        if self._thread is None:
            self._write_inline(kind, values)
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = self._enqueue(kind, values, waiter)
        if budget_s is None:
            await waiter
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), budget_s)
        except TimeoutError:
            waiter.add_done_callback(consume)  # the writer may still settle it
            if not self._abandon(entry):
                raise DecisionLogError(
                    f"the decision log did not commit within {budget_s * 1000:g} ms "
                    "(backend slow or unreachable); the record was not kept"
                ) from None

    def _abandon(self, entry: _Entry) -> bool:
        """A caller gives up on `entry`; True when it was committed after all."""
        with self._states:
            if entry.state == _DONE:
                return not entry.failed
            entry.state = _DROPPED if entry.state == _PENDING else _ABANDONED
            return False

    def submit_decision(self, row: Mapping[str, Any]) -> Future:
        """Queue a decision; the future resolves once it is committed."""
        return self._submit("d", _check_row(row, DECISION_COLUMNS, "decision"))

    def append_decision(self, row: Mapping[str, Any]) -> None:
        """Append and wait until durable (raises DecisionLogError when it is not)."""
        self.submit_decision(row).result()

    async def append_decision_async(
        self, row: Mapping[str, Any], budget_s: float | None = None
    ) -> None:
        """Append and await durability; after `budget_s` raise DecisionLogError and make
        sure the row is not kept (dropped if still queued, deleted if committed later)."""
        await self._submit_async("d", _check_row(row, DECISION_COLUMNS, "decision"), budget_s)

    def _outcome_row(self, decision_id: str, outcome: str, ts: float) -> tuple:
        row = {"decision_id": decision_id, "outcome": outcome, "ts": ts, "logged_at": time.time()}
        return _check_row(row, OUTCOME_COLUMNS, "outcome")

    def submit_outcome(self, decision_id: str, outcome: str, ts: float) -> Future:
        return self._submit("o", self._outcome_row(decision_id, outcome, ts))

    def append_outcome(self, decision_id: str, outcome: str, ts: float) -> None:
        """Append an outcome and wait until durable (duplicates of one outcome are ignored)."""
        self.submit_outcome(decision_id, outcome, ts).result()

    async def append_outcome_async(
        self, decision_id: str, outcome: str, ts: float, budget_s: float | None = None
    ) -> None:
        await self._submit_async("o", self._outcome_row(decision_id, outcome, ts), budget_s)

    def submit_shadow(self, decision_id: str, score: float, version: str) -> Future:
        """Queue the shadow model's score of a logged decision (serving.rollout); the writer
        applies it after the decision's own commit (one queue, in order). Fire and forget:
        the future only tells the caller whether it was kept."""
        return self._submit("s", (score, version, decision_id))

    def has_decision(self, decision_id: str) -> bool:
        return self._backend.has_decision(decision_id)

    def prune(self, before_ts: float) -> int:
        """Delete decisions and outcomes older than `before_ts` (epoch s); rows deleted."""
        return self._backend.delete_before(before_ts)

    def ping(self) -> None:
        """Raise when the backend cannot be reached (readiness probe)."""
        ping = getattr(self._backend, "ping", None)
        if ping is not None:
            ping()

    def _take(self, batch: list[_Entry]) -> list[_Entry]:
        with self._states:
            taken = [e for e in batch if e.state == _PENDING]
            for e in taken:
                e.state = _TAKEN
        return taken

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self._batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            taken = self._take(batch)
            shadows = [e for e in taken if e.kind == "s"]
            taken = [e for e in taken if e.kind != "s"]
            decisions = [e.values for e in taken if e.kind == "d"]
            outcomes = [e.values for e in taken if e.kind == "o"]
            error: DecisionLogError | None = None
            if taken:
                try:
                    self._backend.write(decisions, outcomes)
                except Exception as exc:  # every waiter learns its write failed
                    error = DecisionLogError(f"decision log write failed: {exc}")
            with self._states:
                abandoned = [e for e in taken if e.state == _ABANDONED]
                for e in taken:
                    e.state, e.failed = _DONE, error is not None
            if abandoned and error is None:
                self._forget([e.values[0] for e in abandoned if e.kind == "d"])
            _release([e.waiter for e in taken], error)
            if shadows:
                self._write_shadows(shadows)
            if stop:
                return

    def _write_shadows(self, entries: list[_Entry]) -> None:
        """After the batch's decisions: a failed shadow write never fails a decision."""
        error = None
        try:
            self._backend.write_shadows([e.values for e in entries])
        except Exception as exc:
            error = DecisionLogError(f"shadow score write failed: {exc}")
        with self._states:
            for e in entries:
                e.state, e.failed = _DONE, error is not None
        _release([e.waiter for e in entries], error)

    def _forget(self, decision_ids: list[str]) -> None:
        """Delete decisions whose callers gave up while they were being committed."""
        try:
            self._backend.delete_decisions(decision_ids)
        except Exception as exc:
            _LIMITED.error(
                "decision-log-forget",
                "%d decisions answered 503 stay in the log (delete failed: %s)",
                len(decision_ids),
                type(exc).__name__,
            )

    # --- reading -------------------------------------------------------------------------
    def decisions(self) -> pd.DataFrame:
        """All decisions; `ts` as UTC timestamps, `reasons` / `signals` as JSON text."""
        return _frame(self._backend.read("decisions", list(DECISION_COLUMNS)), DECISION_COLUMNS)

    def outcomes(self) -> pd.DataFrame:
        """All outcomes (several per decision are possible: accepted, then step_completed)."""
        return _frame(self._backend.read("outcomes", list(OUTCOME_COLUMNS)), OUTCOME_COLUMNS)

    def recent(self, since_ts: float, columns: Sequence[str], limit: int) -> LogWindow:
        """Decisions logged at or after `since_ts` (the newest `limit`, only `columns` - the
        dashboard reads a window, not the whole log) and the outcomes of those decisions.
        Blocking: callers on an event loop run it on a thread (`serving.dashboard`)."""
        unknown = [c for c in columns if c not in DECISION_COLUMNS]
        if unknown:
            raise ValueError(f"unknown decision columns {unknown}")
        cols = list(dict.fromkeys(["decision_id", "ts", *columns]))
        decisions, outcomes = self._backend.read_since(since_ts, cols, limit)
        return LogWindow(
            pd.DataFrame.from_records(decisions, columns=cols),
            pd.DataFrame.from_records(outcomes, columns=list(OUTCOME_COLUMNS)),
            truncated=len(decisions) >= limit,
        )

    def close(self) -> None:
        if self._housekeeper is not None:
            self._housekeeper.close()
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._backend.close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(waiters: Sequence[Waiter], error: DecisionLogError | None) -> None:
    """Resolve a batch's waiters: threads directly, coroutines with one call per event loop.

    A waiter that gave up (a cancelled request) is skipped; its row is committed all the same.
    """
    loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for waiter in waiters:
        if isinstance(waiter, asyncio.Future):
            loops.setdefault(waiter.get_loop(), []).append(waiter)
        elif waiter.set_running_or_notify_cancel():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
    for loop, futures in loops.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: Sequence[asyncio.Future], error: DecisionLogError | None) -> None:
    for future in futures:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def _frame(rows: list[tuple], columns: Mapping[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    for col in _BOOL_COLUMNS:
        if col in frame:
            frame[col] = frame[col].astype(bool)
    for col in _TS_COLUMNS:
        if col in frame:
            frame[col] = pd.to_datetime(frame[col].astype("float64"), unit="s", utc=True)
    return frame


# --- SQLite ---------------------------------------------------------------------------------


def _ddl(table: str, columns: Mapping[str, tuple[str, str]], dialect: int, extra: str = "") -> str:
    cols = ", ".join(f"{name} {types[dialect]}" for name, types in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols}{extra})"


_OUTCOME_KEY = ", UNIQUE (decision_id, outcome)"
_SET_SHADOW = "UPDATE {table} SET shadow_score = {p}, shadow_version = {p} WHERE decision_id = {p}"


def _since_sql(prefix: str, columns: Sequence[str], mark: str, limit: int) -> tuple[str, str]:
    """The newest `limit` decisions at or after a time, and the outcomes of those decisions."""
    recent = (
        f"SELECT {', '.join(columns)} FROM {prefix}decisions WHERE ts >= {mark} "
        f"ORDER BY ts DESC LIMIT {int(limit)}"
    )
    outcomes = (
        f"SELECT {', '.join('o.' + c for c in OUTCOME_COLUMNS)} FROM {prefix}outcomes o "
        f"JOIN (SELECT decision_id FROM {prefix}decisions WHERE ts >= {mark} "
        f"ORDER BY ts DESC LIMIT {int(limit)}) d ON d.decision_id = o.decision_id"
    )
    return recent, outcomes


_PRUNE_BATCH = 2000  # rows per retention delete (one short write lock each)


def _add_missing(table: str, have: set[str] | None, dialect: int) -> list[str]:
    """ALTER statements adding the later columns to an older log (positional inserts need
    them at the end, where ADD COLUMN puts them). `have` None: Postgres' IF NOT EXISTS."""
    return [
        f"ALTER TABLE {table} ADD COLUMN "
        f"{'IF NOT EXISTS ' if have is None else ''}{c} {DECISION_COLUMNS[c][dialect]}"
        for c in _ADDED_COLUMNS
        if have is None or c not in have
    ]


class SqliteBackend:
    """WAL file; commits fsync the WAL (synchronous=FULL). Checkpoints - copying the WAL into
    the database, with an fsync of its own - run on a separate thread every
    `checkpoint_interval_s`, so the commit path never waits for one (SQLite's automatic
    checkpoint would run inside whichever commit crosses the threshold)."""

    def __init__(
        self,
        path: Path,
        synchronous: str,
        checkpoint_interval_s: float = 0,
        *,
        wal_limit_mb: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous.upper()
        self._wal_limit_mb = wal_limit_mb
        self._writer: sqlite3.Connection | None = None
        self._checkpoint_s = checkpoint_interval_s
        setup = self._connect()
        setup.execute(_ddl("decisions", DECISION_COLUMNS, 0))
        have = {r[1] for r in setup.execute("PRAGMA table_info(decisions)")}
        for stmt in _add_missing("decisions", have, 0):
            setup.execute(stmt)
        setup.execute(_ddl("outcomes", OUTCOME_COLUMNS, 0, _OUTCOME_KEY))
        setup.execute("CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)")
        setup.close()
        self._reader = self._connect()
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        n_d, n_o = len(DECISION_COLUMNS), len(OUTCOME_COLUMNS)
        self._insert_d = f"INSERT OR IGNORE INTO decisions VALUES ({', '.join('?' * n_d)})"
        self._insert_o = f"INSERT OR IGNORE INTO outcomes VALUES ({', '.join('?' * n_o)})"
        self._checkpointer = (
            WalCheckpointer(
                self._connect,
                self._checkpoint_s,
                "decision-log-checkpoint",
                wal_path=wal_file(self.path),
                wal_limit_mb=wal_limit_mb,
                writer_lock=self._write_lock,
            )
            if self._checkpoint_s > 0
            else None
        )

    def _connect(self) -> sqlite3.Connection:
        return connect_wal(
            self.path, self._synchronous, timeout_s=30.0, wal_limit_mb=self._wal_limit_mb
        )

    def write(self, decisions: Sequence[tuple], outcomes: Sequence[tuple]) -> None:
        if self._writer is None:  # created on the writer thread, used only there
            self._writer = self._connect()
            if self._checkpointer is not None:
                manual_checkpoints(self._writer)
        con = self._writer
        with self._write_lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                if decisions:
                    con.executemany(self._insert_d, decisions)
                if outcomes:
                    con.executemany(self._insert_o, outcomes)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def write_shadows(self, shadows: Sequence[tuple]) -> None:
        con = self._writer or self._connect()  # called on the writer thread
        with self._write_lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(_SET_SHADOW.format(table="decisions", p="?"), shadows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def has_decision(self, decision_id: str) -> bool:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
        return row is not None

    def read(self, table: str, columns: Sequence[str]) -> list[tuple]:
        con = self._connect()
        try:
            return con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY ts").fetchall()
        finally:
            con.close()

    def read_since(
        self, since_ts: float, columns: Sequence[str], limit: int
    ) -> tuple[list[tuple], list[tuple]]:
        recent, outcomes = _since_sql("", columns, "?", limit)
        con = self._connect()
        try:  # one read transaction: the outcomes belong to the same decisions
            con.execute("BEGIN")
            rows = con.execute(recent, (since_ts,)).fetchall()
            return rows, con.execute(outcomes, (since_ts,)).fetchall()
        finally:
            con.close()

    def delete_decisions(self, decision_ids: Sequence[str]) -> None:
        con = self._writer or self._connect()  # called on the writer thread
        con.executemany("DELETE FROM decisions WHERE decision_id = ?", [(i,) for i in decision_ids])

    def delete_before(self, ts: float) -> int:
        """Delete in small transactions so the writer never waits long for the lock."""
        con = self._connect()
        deleted = 0
        try:
            for table in ("outcomes", "decisions"):
                while True:
                    n = con.execute(
                        f"DELETE FROM {table} WHERE rowid IN "
                        f"(SELECT rowid FROM {table} WHERE ts < ? LIMIT {_PRUNE_BATCH})",
                        (ts,),
                    ).rowcount
                    deleted += n
                    if n < _PRUNE_BATCH:
                        break
        finally:
            con.close()
        return deleted

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._reader.close()
        if self._writer is not None:
            self._writer.close()


# --- PostgreSQL -----------------------------------------------------------------------------


class PostgresBackend:
    """Tables `decisions` and `outcomes` in their own schema (one per deployment or test).

    Both connections reopen after an error (a restarted server: the reader used to stay
    closed, and /outcome answered 500 until the worker restarted). Every statement runs
    under a client-side deadline, `call_timeout_s`: a server that stops answering (stopped,
    or the network black-holes the connection) has its socket shut down, so the call fails
    instead of blocking its thread forever; new connections give up after
    `connect_timeout_s`.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        connect_timeout_s: float = 5.0,
        call_timeout_s: float = 10.0,
    ) -> None:
        import psycopg

        self.dsn = dsn
        self.schema = schema
        self._psycopg = psycopg
        self._connect_timeout = max(2, round(connect_timeout_s))  # libpq: whole seconds, >= 2
        self._call_timeout_s = call_timeout_s
        try:
            setup = self._open()
        except psycopg.OperationalError as exc:
            raise DecisionLogError(
                f"the PostgreSQL decision log is unreachable ({exc}); start the server, fix "
                "backends.decision_log.dsn in configs/serving.yaml, or use kind: sqlite"
            ) from exc
        # replicas starting together race on IF NOT EXISTS (a unique violation in the
        # catalog): the DDL runs in one transaction behind a lock named for the schema
        with setup as con, con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"intent-log:{schema}",))
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            con.execute(_ddl(f'"{schema}".decisions', DECISION_COLUMNS, 1))
            for stmt in _add_missing(f'"{schema}".decisions', None, 1):
                con.execute(stmt)
            con.execute(_ddl(f'"{schema}".outcomes', OUTCOME_COLUMNS, 1, _OUTCOME_KEY))
            con.execute(f'CREATE INDEX IF NOT EXISTS decisions_ts ON "{schema}".decisions (ts)')
        self._writer = None
        self._reader = self._open()
        self._read_lock = threading.Lock()
        n_d, n_o = len(DECISION_COLUMNS), len(OUTCOME_COLUMNS)
        self._insert_d = (
            f'INSERT INTO "{schema}".decisions VALUES ({", ".join(["%s"] * n_d)}) '
            "ON CONFLICT DO NOTHING"
        )
        self._insert_o = (
            f'INSERT INTO "{schema}".outcomes VALUES ({", ".join(["%s"] * n_o)}) '
            "ON CONFLICT DO NOTHING"
        )

    def _open(self, autocommit: bool = True):
        return self._psycopg.connect(
            self.dsn, autocommit=autocommit, connect_timeout=self._connect_timeout
        )

    def write(self, decisions: Sequence[tuple], outcomes: Sequence[tuple]) -> None:
        if self._writer is None or self._writer.closed:
            self._writer = self._open(autocommit=False)
        con = self._writer
        try:
            with deadline(con, self._call_timeout_s), con.transaction(), con.cursor() as cur:
                if decisions:
                    cur.executemany(self._insert_d, [_pg_row(r) for r in decisions])
                if outcomes:
                    cur.executemany(self._insert_o, outcomes)
        except self._psycopg.OperationalError:
            con.close()  # reconnect on the next batch
            raise

    def write_shadows(self, shadows: Sequence[tuple]) -> None:
        if self._writer is None or self._writer.closed:
            self._writer = self._open(autocommit=False)
        con = self._writer
        sql = _SET_SHADOW.format(table=f'"{self.schema}".decisions', p="%s")
        try:
            with deadline(con, self._call_timeout_s), con.transaction(), con.cursor() as cur:
                cur.executemany(sql, list(shadows))
        except self._psycopg.OperationalError:
            con.close()
            raise

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run a query on the reader connection, reopening it once if it broke."""
        with self._read_lock:
            for attempt in (1, 2):
                if self._reader is None or self._reader.closed:
                    self._reader = self._open()
                con = self._reader
                try:
                    with deadline(con, self._call_timeout_s):
                        return con.execute(sql, params).fetchall()
                except self._psycopg.OperationalError:
                    con.close()
                    self._reader = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def has_decision(self, decision_id: str) -> bool:
        sql = f'SELECT 1 FROM "{self.schema}".decisions WHERE decision_id = %s'
        return bool(self._read(sql, (decision_id,)))

    def read(self, table: str, columns: Sequence[str]) -> list[tuple]:
        return self._read(f'SELECT {", ".join(columns)} FROM "{self.schema}".{table} ORDER BY ts')

    def read_since(
        self, since_ts: float, columns: Sequence[str], limit: int
    ) -> tuple[list[tuple], list[tuple]]:
        recent, outcomes = _since_sql(f'"{self.schema}".', columns, "%s", limit)
        return self._read(recent, (since_ts,)), self._read(outcomes, (since_ts,))

    def ping(self) -> None:
        self._read("SELECT 1")

    def delete_decisions(self, decision_ids: Sequence[str]) -> None:
        with self._open() as con, deadline(con, self._call_timeout_s):
            con.execute(
                f'DELETE FROM "{self.schema}".decisions WHERE decision_id = ANY(%s)',
                (list(decision_ids),),
            )

    def delete_before(self, ts: float) -> int:
        deleted = 0
        with self._open() as con:
            for table in ("outcomes", "decisions"):
                while True:
                    with deadline(con, self._call_timeout_s):
                        n = con.execute(
                            f'DELETE FROM "{self.schema}".{table} WHERE ctid IN (SELECT ctid '
                            f'FROM "{self.schema}".{table} WHERE ts < %s LIMIT {_PRUNE_BATCH})',
                            (ts,),
                        ).rowcount
                    deleted += n
                    if n < _PRUNE_BATCH:
                        break
        return deleted

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._writer is not None:
            self._writer.close()


@contextlib.contextmanager
def deadline(con: Any, seconds: float):
    """Shut the connection's socket down if the block runs longer than `seconds`.

    libpq has no client-side timeout for a server that accepted the connection and then
    stopped answering; a shut-down socket makes the blocked call fail at once.
    """
    timer = threading.Timer(seconds, _cut, (con,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _cut(con: Any) -> None:
    with contextlib.suppress(Exception):
        sock = socket.socket(fileno=os.dup(con.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


_BOOL_INDEX = tuple(list(DECISION_COLUMNS).index(c) for c in _BOOL_COLUMNS)


def _pg_row(row: tuple) -> tuple:
    values = list(row)
    for i in _BOOL_INDEX:
        values[i] = bool(values[i])
    return tuple(values)


# --- memory ---------------------------------------------------------------------------------


class MemoryBackend:
    """Lists in memory: simulations and tests (not durable, by definition)."""

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple]] = {"decisions": [], "outcomes": []}
        self._ids: set[str] = set()
        self._outcome_keys: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def write(self, decisions: Sequence[tuple], outcomes: Sequence[tuple]) -> None:
        with self._lock:
            for row in decisions:
                if row[0] not in self._ids:
                    self._ids.add(row[0])
                    self._rows["decisions"].append(row)
            for row in outcomes:
                if (row[0], row[1]) not in self._outcome_keys:
                    self._outcome_keys.add((row[0], row[1]))
                    self._rows["outcomes"].append(row)

    def write_shadows(self, shadows: Sequence[tuple]) -> None:
        at = [list(DECISION_COLUMNS).index(c) for c in ("shadow_score", "shadow_version")]
        scores = {decision_id: (score, version) for score, version, decision_id in shadows}
        with self._lock:
            rows = self._rows["decisions"]
            for i, row in enumerate(rows):
                if row[0] in scores:
                    values = list(row) + [None] * (len(DECISION_COLUMNS) - len(row))
                    values[at[0]], values[at[1]] = scores[row[0]]
                    rows[i] = tuple(values)

    def has_decision(self, decision_id: str) -> bool:
        return decision_id in self._ids

    def read(self, table: str, columns: Sequence[str]) -> list[tuple]:
        with self._lock:
            return list(self._rows[table])

    def read_since(
        self, since_ts: float, columns: Sequence[str], limit: int
    ) -> tuple[list[tuple], list[tuple]]:
        names = list(DECISION_COLUMNS)
        ts_at, at = names.index("ts"), [names.index(c) for c in columns]
        with self._lock:
            rows = sorted((r for r in self._rows["decisions"] if r[ts_at] >= since_ts),
                          key=lambda r: r[ts_at], reverse=True)[:limit]  # fmt: skip
            ids = {r[0] for r in rows}
            outcomes = [o for o in self._rows["outcomes"] if o[0] in ids]
        return [tuple(r[i] if i < len(r) else None for i in at) for r in rows], outcomes

    def delete_decisions(self, decision_ids: Sequence[str]) -> None:
        gone = set(decision_ids)
        with self._lock:
            self._rows["decisions"] = [r for r in self._rows["decisions"] if r[0] not in gone]
            self._ids -= gone

    def delete_before(self, ts: float) -> int:
        ts_at = {"decisions": list(DECISION_COLUMNS).index("ts"), "outcomes": 2}
        deleted = 0
        with self._lock:
            for table, i in ts_at.items():
                keep = [r for r in self._rows[table] if r[i] >= ts]
                deleted += len(self._rows[table]) - len(keep)
                self._rows[table] = keep
        return deleted

    def close(self) -> None:
        return None


def sqlite_log(
    path: Path,
    *,
    synchronous: str,
    batch_max: int,
    checkpoint_interval_s: float = 0,
    wal_limit_mb: float | None = None,
    retention_s: float | None = None,
    housekeeping_interval_s: float = 60.0,
) -> DecisionLog:
    """`checkpoint_interval_s` 0 leaves checkpoints to SQLite (inside commits)."""
    backend = SqliteBackend(path, synchronous, checkpoint_interval_s, wal_limit_mb=wal_limit_mb)
    return DecisionLog(
        backend,
        batch_max=batch_max,
        retention_s=retention_s,
        housekeeping_interval_s=housekeeping_interval_s,
    )


def postgres_log(
    dsn: str,
    schema: str,
    *,
    batch_max: int,
    connect_timeout_s: float = 5.0,
    call_timeout_s: float = 10.0,
    retention_s: float | None = None,
    housekeeping_interval_s: float = 60.0,
) -> DecisionLog:
    backend = PostgresBackend(
        dsn, schema, connect_timeout_s=connect_timeout_s, call_timeout_s=call_timeout_s
    )
    return DecisionLog(
        backend,
        batch_max=batch_max,
        retention_s=retention_s,
        housekeeping_interval_s=housekeeping_interval_s,
    )


def memory_log() -> DecisionLog:
    return DecisionLog(MemoryBackend(), batch_max=1, threaded=False)
