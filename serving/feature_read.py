"""Online feature reads under a latency budget, and the default reader (Feast).

Any object with `read(user_id, session_id, step, now_epoch)` returning the feature values
and whether the user (and the session) is known can feed the engine: `OnlineFeatures` in the
server (its `FeatureVector`), a simulation's own reader in policy evaluation. A read slower
than `budget_ms` is answered by the rules (`feature_budget_exceeded`). Two ways to keep it:

- threads (any store; the only way for a network store such as Redis): the read runs on a
  small thread pool and the caller waits at most `budget_ms`, so a stalled store costs one
  fallback, not a stalled request. A read that overruns keeps its thread busy until it
  returns; the pool bounds how many can pile up. The hop costs CPU: a submit, a worker
  wake-up, a future resolved back onto the event loop, and the worker contending with the
  loop for the GIL (under load ~0.3 ms of the server's CPU per /score on 2 cores).
- inline (`inline=True`, for an embedded store: SQLite's reads are local page-cache or disk
  work that cannot hang on a network): the read runs on the caller's thread and the budget
  is checked when it returns. It cannot cut a slow read short, so a read that overran still
  falls back, but the time was spent; `features.store.online.SqliteTables` keeps writers from
  blocking such reads (WAL) and bounds a lock wait by the budget.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from core.layout import Layout
from serving.decision import FallbackReason
from serving.log_limit import LimitedLog
from serving.offloop import BudgetExceeded, OffLoop

log = logging.getLogger(__name__)
_LIMITED = LimitedLog(log)


class OnlineReader(Protocol):
    def read(self, user_id: str, session_id: str, step: str, now_epoch: float) -> Any: ...


@dataclass(frozen=True, slots=True)
class FeatureRead:
    """One read's outcome: values (None = missing), what the store knows, or the error."""

    features: Mapping[str, Any]
    user_known: bool  # the store holds user history (aggregates)
    error: FallbackReason | None
    detail: str | None
    elapsed_ms: float
    session_known: bool = False  # the store holds the session's live state (pushed by /events)


def unpack(result: Any) -> tuple[Mapping[str, Any], bool, bool]:
    """(values, user_known, session_known) from a `FeatureVector`-like object, or from a
    `(values, user_known)` / `(values, user_known, session_known)` tuple."""
    if isinstance(result, tuple) and len(result) in (2, 3):
        values, user_known, *session = result
        return values, bool(user_known), bool(session and session[0])
    return result.values, bool(result.user_known), bool(getattr(result, "session_known", False))


def _failed(exc: Exception, elapsed_ms: float) -> FeatureRead:
    _LIMITED.warning("feature-read", "online feature read failed: %s", type(exc).__name__)
    return FeatureRead({}, False, FallbackReason.FEATURE_STORE_ERROR, str(exc), elapsed_ms)


class BudgetedReader:
    """Wraps a reader: reads may take `budget_ms`, on `threads` worker threads or inline.

    `read_async` (the server) always reads on the worker threads, whatever the mode: a SQLite
    file locked by another process used to freeze the event loop for the lock's whole wait.
    `inline` applies to `read`, the in-process callers' path (simulation, benchmarks). A read
    still queued when its budget runs out never runs (`serving.offloop`), so a hung store
    ties up at most `threads` threads. A read that overruns while the store's last finished
    read failed (refused connection, deleted file) reports `feature_store_error`: a dead
    store is an error, not a slow read.
    """

    def __init__(
        self,
        reader: OnlineReader,
        budget_ms: float,
        threads: int,
        *,
        inline: bool = False,
        error_memory_s: float = 5.0,
    ) -> None:
        self.reader = reader
        self.budget_s = budget_ms / 1000.0
        self.inline = inline
        self._pool = OffLoop(threads, "feature-read")
        self._error_memory_s = error_memory_s
        self._last_ok = -math.inf
        self._last_error = -math.inf
        self._last_error_kind = ""

    @property
    def mode(self) -> str:
        return "inline" if self.inline else "threads"

    def _call(
        self, user_id: str, session_id: str, step: str, now: float
    ) -> tuple[Mapping, bool, bool]:
        try:
            result = unpack(self.reader.read(user_id, session_id, step, now))
        except Exception as exc:
            self._last_error, self._last_error_kind = time.monotonic(), type(exc).__name__
            raise
        self._last_ok = time.monotonic()
        return result

    def store_failing(self) -> str | None:
        """The error of the store's last finished read, when it failed recently."""
        now = time.monotonic()
        if self._last_error > self._last_ok and now - self._last_error < self._error_memory_s:
            return self._last_error_kind
        return None

    def _late(self, started: float) -> FeatureRead:
        elapsed = (time.perf_counter() - started) * 1000.0
        failing = self.store_failing()
        if failing is not None:
            detail = f"online store failing ({failing}); no answer within the budget"
            return FeatureRead({}, False, FallbackReason.FEATURE_STORE_ERROR, detail, elapsed)
        detail = f"online read still running after {self.budget_s * 1000:g} ms"
        return FeatureRead({}, False, FallbackReason.FEATURE_BUDGET_EXCEEDED, detail, elapsed)

    def _read_inline(self, user_id: str, session_id: str, step: str, now: float) -> FeatureRead:
        started = time.perf_counter()
        try:
            values, user_known, session_known = self._call(user_id, session_id, step, now)
        except Exception as exc:
            return _failed(exc, (time.perf_counter() - started) * 1000.0)
        elapsed = (time.perf_counter() - started) * 1000.0
        if elapsed > self.budget_s * 1000.0:
            detail = f"online read took {elapsed:.1f} ms (budget {self.budget_s * 1000:g} ms)"
            return FeatureRead({}, False, FallbackReason.FEATURE_BUDGET_EXCEEDED, detail, elapsed)
        return FeatureRead(values, user_known, None, None, elapsed, session_known)

    def read(self, user_id: str, session_id: str, step: str, now: float) -> FeatureRead:
        if self.inline:
            return self._read_inline(user_id, session_id, step, now)
        started = time.perf_counter()
        try:
            values, user_known, session_known = self._pool.run_sync(
                self._call, user_id, session_id, step, now, budget_s=self.budget_s, what="read"
            )
        except BudgetExceeded:
            return self._late(started)
        except Exception as exc:
            return _failed(exc, (time.perf_counter() - started) * 1000.0)
        elapsed = (time.perf_counter() - started) * 1000.0
        return FeatureRead(values, user_known, None, None, elapsed, session_known)

    async def read_async(self, user_id: str, session_id: str, step: str, now: float) -> FeatureRead:
        started = time.perf_counter()
        try:
            values, user_known, session_known = await self._pool.run(
                self._call, user_id, session_id, step, now, budget_s=self.budget_s, what="read"
            )
        except BudgetExceeded:
            return self._late(started)
        except Exception as exc:
            return _failed(exc, (time.perf_counter() - started) * 1000.0)
        elapsed = (time.perf_counter() - started) * 1000.0
        return FeatureRead(values, user_known, None, None, elapsed, session_known)

    def push_session(self, session_id: str, snapshot: Mapping[str, float], ts: Any) -> None:
        """Forward a live session snapshot when the reader can store one (Feast push)."""
        push = getattr(self.reader, "push_session", None)
        if push is not None:
            push(session_id, snapshot, ts)

    @property
    def can_push(self) -> bool:
        return hasattr(self.reader, "push_session")

    def check(self) -> None:
        """Raise when the store cannot serve reads (readiness probe)."""
        check = getattr(self.reader, "check", None)
        if check is not None:
            check()

    def close(self) -> None:
        self._pool.close()
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()


def open_feast_reader(
    layout: Layout, feature_service: str | None, lock_timeout_s: float | None = None
) -> tuple[Any | None, str]:
    """`features.store.online.OnlineFeatures` over the layout's store, or None and why not.

    `feature_service` is the model's (its manifest's) contract; None uses the one in
    `configs/features.yaml` (rules-only mode still reads live session signals).
    `lock_timeout_s` bounds a SQLite read's wait for a writer's lock.
    """
    try:
        from core.settings import load_config
        from features.store.config import FeatureStoreConfig
        from features.store.online import OnlineFeatures
        from features.store.repo import open_store

        cfg = load_config(FeatureStoreConfig, layout=layout)
        store = open_store(layout, cfg, offline=False)  # the server only reads online
        service = feature_service or cfg.feature_service
        online = OnlineFeatures.from_package(store, layout, service, lock_timeout_s=lock_timeout_s)
        return online, f"feast:{service}"
    except Exception as exc:  # not applied yet, no registry, Redis down, ...
        return None, f"feast unavailable: {type(exc).__name__}: {exc}"
