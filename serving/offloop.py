"""Blocking backend calls off the event loop, each with its own time budget.

A cap check on Redis or SQLite, a PostgreSQL lookup or a SQLite feature read can block for
seconds when the backend hangs (a stopped server, a black-holed connection, a file locked by
another process). Run on the event loop, that froze every request and `/livez` with it
(issue 11). `OffLoop` runs such calls on a small bounded thread pool and awaits each for at
most its budget: the request degrades (fallback, `store_error`, 503) within the budget while
the loop keeps answering.

A call still queued when its budget runs out is cancelled and never runs, so a hung backend
costs at most `threads` stuck threads, never an unbounded pile; a call already running
cannot be interrupted from here, and `on_late` lets the caller undo what it did once it
returns (a cap slot acquired after the request gave up is released).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class BudgetExceeded(TimeoutError):
    """A backend call did not return within its budget (the backend is slow or hung)."""

    def __init__(self, what: str, budget_s: float) -> None:
        super().__init__(f"{what} did not answer within {budget_s * 1000:g} ms")
        self.what = what
        self.budget_s = budget_s


class OffLoop:
    """A bounded thread pool whose calls are awaited with a per-call budget."""

    def __init__(self, threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError(f"{name}: threads must be >= 1, got {threads}")
        self.name = name
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn, *args)

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        budget_s: float,
        what: str,
        on_late: Callable[[T], None] | None = None,
    ) -> T:
        """`fn(*args)` on the pool; raises BudgetExceeded after `budget_s` (the loop is free
        meanwhile). `on_late(result)` runs if the call completes after the caller gave up."""
        future = self._pool.submit(fn, *args)
        wrapped = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(wrapped), budget_s)
        except TimeoutError:
            wrapped.add_done_callback(consume)  # nobody awaits it any more: no warning
            _give_up(future, on_late)
            raise BudgetExceeded(what, budget_s) from None

    def run_sync(
        self,
        fn: Callable[..., T],
        *args: Any,
        budget_s: float,
        what: str,
        on_late: Callable[[T], None] | None = None,
    ) -> T:
        """`run` for a caller that is a thread, not a coroutine."""
        future = self._pool.submit(fn, *args)
        try:
            return future.result(timeout=budget_s)
        except concurrent.futures.TimeoutError:
            _give_up(future, on_late)
            raise BudgetExceeded(what, budget_s) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def consume(future: asyncio.Future) -> None:
    """Mark an abandoned future's outcome as seen ("exception was never retrieved")."""
    if not future.cancelled():
        future.exception()


def _give_up(future: concurrent.futures.Future, on_late: Callable[[Any], None] | None) -> None:
    if future.cancel() or on_late is None:  # never started: nothing to undo
        return

    def undo(done: concurrent.futures.Future) -> None:
        if not done.cancelled() and done.exception() is None:
            on_late(done.result())

    future.add_done_callback(undo)
