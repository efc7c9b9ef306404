"""An engine for fault tests: real stores passed in, budgets from the test, no model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fault_limits import NOW

from core.vocabulary import MomentType
from serving.config import BudgetsConfig, ColdStart, ExplainConfig
from serving.decision import DecisionRequest
from serving.decision_log import memory_log
from serving.engine import DecisionEngine, Runtime
from serving.experiments import Assigner
from serving.sessions import MemorySessionStore

__all__ = ["NOW", "budgets", "decide_all", "fault_engine", "shown_users", "trigger_request"]


def budgets(**kw: float) -> BudgetsConfig:
    values: dict[str, Any] = {
        "threads": 4,
        "caps_ms": 200,
        "log_commit_ms": 1000,
        "lookup_ms": 500,
        "probe_ms": 500,
    }
    values.update(kw)
    return BudgetsConfig(**values)


def fault_engine(
    policy_cfg, signals_cfg, *, caps, log=None, reader=None, sessions=None, **budget_kw
):
    runtime = Runtime(None, reader, "rules", "test", "")
    return DecisionEngine(
        policy_cfg,
        signals_cfg,
        runtime=runtime,
        caps=caps,
        log=log or memory_log(),
        explain=ExplainConfig(top_k=3, candidates=6),
        cold_start=ColdStart.UNKNOWN_USER_AND_SESSION,
        sessions=sessions or MemorySessionStore(signals_cfg, 1800.0),
        id_factory=lambda req: f"d-{req.user_id}-{req.now}",
        budgets=budgets(**budget_kw),
    )


def shown_users(policy_cfg, n: int, prefix: str = "u") -> list[str]:
    """Users outside the holdout: a pause of 14 s shows them a contextual tip."""
    assign = Assigner(policy_cfg.experiments)
    users = (f"{prefix}-{i}" for i in range(10 * n + 100))
    return [u for u in users if not assign(u).holdout][:n]


def trigger_request(user_id: str, now: float = NOW) -> DecisionRequest:
    return DecisionRequest(
        user_id=user_id,
        session_id=f"{user_id}-s",
        step="identity_verification",
        now=now,
        moment=MomentType.PAUSE,
        signals={"pause_s": 14.0, "scroll_depth": 30.0, "cta_fails": 0.0},
        tz="UTC",
    )


async def _timed(coro) -> tuple[Any, float]:
    started = time.perf_counter()
    try:
        result = await coro
    except Exception as exc:  # the caller inspects what each request got
        result = exc
    return result, time.perf_counter() - started


def decide_all(engine, requests, *, outcome: bool = False):
    """Run the requests concurrently on one event loop with a lag ticker beside them.

    Returns (results or exceptions, per-request seconds, the loop's worst stall in seconds).
    """
    from fault_servers import LoopLag

    async def main():
        lag = LoopLag()
        ticker = asyncio.ensure_future(lag.run())
        await asyncio.sleep(0.02)
        if outcome:
            calls = [engine.record_outcome_async(r, "accepted", NOW) for r in requests]
        else:
            calls = [engine.decide_async(r) for r in requests]
        timed = await asyncio.gather(*(_timed(c) for c in calls))
        lag.stop()
        await ticker
        return [r for r, _ in timed], [t for _, t in timed], lag.worst_s

    return asyncio.run(main())
