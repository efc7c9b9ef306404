"""The off-loop pool keeps its promises, and an outage logs a few lines, not one per request."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.log_limit import LimitedLog
from serving.offloop import BudgetExceeded, OffLoop

BUDGET_S = 0.05
RELEASE_LIMIT_S = 30.0  # generous bound on waiting for a blocked call to finish


def test_a_call_still_queued_at_its_budget_never_runs_and_a_late_one_is_undone() -> None:
    pool = OffLoop(1, "test")
    gate = threading.Event()
    ran: list[str] = []
    undone: list[str] = []

    def blocked() -> str:
        gate.wait(RELEASE_LIMIT_S)
        ran.append("blocked")
        return "blocked"

    def queued() -> str:
        ran.append("queued")
        return "queued"

    async def main() -> None:
        first = asyncio.ensure_future(
            pool.run(blocked, budget_s=BUDGET_S, what="blocked", on_late=undone.append)
        )
        await asyncio.sleep(0)  # the first call takes the only thread
        with pytest.raises(BudgetExceeded, match="queued did not answer within 50 ms"):
            await pool.run(queued, budget_s=BUDGET_S, what="queued")
        with pytest.raises(BudgetExceeded):
            await first

    asyncio.run(main())
    gate.set()
    deadline = time.monotonic() + RELEASE_LIMIT_S
    while not undone and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.close()
    assert undone == ["blocked"]  # it finished after its caller gave up: undo called
    assert ran == ["blocked"]  # the queued call was cancelled, never ran


def test_run_sync_returns_results_and_raises_the_calls_errors() -> None:
    pool = OffLoop(2, "test")
    assert pool.run_sync(lambda a, b: a + b, 2, 3, budget_s=RELEASE_LIMIT_S, what="add") == 5
    with pytest.raises(ZeroDivisionError):
        pool.run_sync(lambda: 1 / 0, budget_s=RELEASE_LIMIT_S, what="div")
    pool.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=200, deadline=None)
@given(
    burst=st.integers(1, 5),
    window=st.floats(0.5, 20),
    calls=st.lists(st.tuples(st.floats(0, 5), st.sampled_from("ab")), max_size=80),
)
def test_limited_log_bounds_lines_and_accounts_for_every_call(burst, window, calls) -> None:
    logger = logging.getLogger(f"test.limited.{id(calls)}")
    logger.propagate = False
    handler = Collect()
    logger.addHandler(handler)
    clock = Clock()
    limited = LimitedLog(logger, burst=burst, window_s=window, clock=clock)
    logged: dict[str, list[float]] = {"a": [], "b": []}
    for step, key in calls:
        clock.now += step
        if limited.warning(key, "line %s", key):
            logged[key].append(clock.now)
    lines = [r for r in handler.records if r.getMessage().startswith("line")]
    summaries = [r for r in handler.records if "suppressed" in r.getMessage()]
    assert len(lines) == sum(map(len, logged.values()))
    for times in logged.values():
        # windows are fixed, so any stretch of `window` seconds spans at most two of them
        for i, t in enumerate(times):
            assert sum(1 for u in times[i:] if u - t < window) <= 2 * burst
    # every call is a line, or counted in a summary, or still pending in its open window
    suppressed = sum(int(r.getMessage().split(": ")[1].split()[0]) for r in summaries)
    pending = sum(dropped for _, _, dropped in limited._windows.values())
    assert len(lines) + suppressed + pending == len(calls)
    logger.removeHandler(handler)


def test_an_outage_of_many_requests_logs_a_few_lines() -> None:
    logger = logging.getLogger("test.limited.outage")
    logger.propagate = False
    handler = Collect()
    logger.addHandler(handler)
    limited = LimitedLog(logger, burst=3, window_s=60.0)
    for _ in range(1000):
        limited.error("decision-log", "decision not logged: %s", "connection refused")
    assert len(handler.records) == 3
    logger.removeHandler(handler)
