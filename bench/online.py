"""Latency of one decision's online read, split into its parts (`intent bench online`).

Timings are wall-clock per call over a fixed list of decisions, after a warm-up; the
FeatureService and views are resolved once, as the server does.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from features.signals import new_state, snapshot
from features.store.online import OnlineFeatures, ReadPath, default_read_path
from features.store.repo import ENTITY_COLUMNS, check_decision_points

BENCH_SESSION = "bench:push"  # the one session id the push benchmark writes


class Decision(NamedTuple):
    """The keys and clock of one scoring request."""

    user_id: str
    session_id: str
    step: str
    now: float


def sample_decisions(decision_points: pd.DataFrame, n: int, seed: int) -> list[Decision]:
    """Up to `n` decision points drawn without replacement (the bench cycles through them)."""
    check_decision_points(decision_points)
    if decision_points.empty:
        raise ValueError("decision points: the table has no rows")
    rows = decision_points.sample(n=min(n, len(decision_points)), random_state=seed)
    return [
        Decision(*(str(r[c]) for c in ENTITY_COLUMNS), float(r["request_ts"]))
        for _, r in rows.iterrows()
    ]


def latency_us(wall_s: Sequence[float], cpu_s: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max wall time per call in microseconds, plus the caller's CPU time
    p50 / p99: on a shared machine the wall tail is mostly waiting for a core."""
    wall, cpu = np.asarray(wall_s) * 1e6, np.asarray(cpu_s) * 1e6
    return {
        "p50": round(float(np.percentile(wall, 50)), 1),
        "p99": round(float(np.percentile(wall, 99)), 1),
        "max": round(float(wall.max()), 1),
        "cpu_p50": round(float(np.percentile(cpu, 50)), 1),
        "cpu_p99": round(float(np.percentile(cpu, 99)), 1),
    }


def time_calls(
    call: Callable[[Decision], object], decisions: Sequence[Decision], reads: int, warmup: int
) -> dict[str, float]:
    """Latency of `call`, cycling through `decisions`; GC is paused while timing."""
    for i in range(warmup):
        call(decisions[i % len(decisions)])
    wall, cpu = [], []
    gc.collect()
    gc.disable()
    try:
        for i in range(reads):
            decision = decisions[i % len(decisions)]
            start, start_cpu = time.perf_counter(), time.thread_time()
            call(decision)
            cpu.append(time.thread_time() - start_cpu)
            wall.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return latency_us(wall, cpu)


def bench_online(
    readers: Mapping[ReadPath, OnlineFeatures],
    decisions: Sequence[Decision],
    reads: int,
    warmup: int,
) -> dict[str, object]:
    """Latency of each read path, of the on-demand function alone and of a push.

    - `<path>_us` for each reader (`online.ReadPath`); `read_us` repeats the server's
      (`read_path`, the backend's `default_read_path`),
    - `on_demand_only_us`: the on-demand function alone on one decision's inputs,
    - `push_us`: writing one session snapshot on the server path (online-store writer),
    - `push_via_push_source_us`: the same through `FeatureStore.push` (fewer calls).
    Pushes go to a bench-only session id, never to a real session.
    """
    server = next(iter(readers.values()))
    first = decisions[0]
    vector = server.read(first.user_id, first.session_id, first.step, first.now)
    function, names = server.plan.on_demand[0]
    inputs: dict[str, list] = {name: [vector.values.get(name, 0.0)] for name in names}
    inputs["request_ts"] = [first.now]
    pushed = snapshot(new_state(BENCH_SESSION))
    pushed_at = datetime.now(UTC)

    def reader(path: ReadPath) -> Callable[[Decision], object]:
        online = readers[path]
        return lambda d: online.read(d.user_id, d.session_id, d.step, d.now)

    result: dict[str, object] = {
        "backend": server.store.config.online_store.type,
        "feature_service": server.service.name,
        "features": len(server.feature_names),
        "decisions": len(decisions),
        "reads": reads,
        "read_path": str(default_read_path(server.store.config.online_store.type)),
    }
    for path in readers:
        result[f"{path}_us"] = time_calls(reader(path), decisions, reads, warmup)
    result["read_us"] = result[f"{result['read_path']}_us"]  # the server's read
    result["on_demand_only_us"] = time_calls(lambda _: function(inputs), decisions, reads, warmup)
    result["push_us"] = _push_latency(server, pushed, pushed_at, reads, warmup, False)
    result["push_via_push_source_us"] = _push_latency(
        server, pushed, pushed_at, reads // 10, warmup, True
    )
    return result


def _push_latency(
    online: OnlineFeatures, pushed: dict, at: datetime, pushes: int, warmup: int, feast: bool
) -> dict[str, float]:
    def push(_: Decision) -> None:
        online.push_session(BENCH_SESSION, pushed, at, via_push_source=feast)

    bench = Decision(BENCH_SESSION, BENCH_SESSION, "", 0.0)
    return time_calls(push, [bench], max(pushes, 1), min(warmup, 20))
