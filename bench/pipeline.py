"""`intent bench features`: how fast the offline pipeline replays and builds.

Two numbers matter: replay throughput on one core (events/s through `signals.update` and
the detectors - the Python loop every event passes through) and the wall time of a whole
build (replay + labels + aggregates) with 1 and 2 worker processes. Throughput is given per
wall second and per CPU second: on a shared machine only the latter is stable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from core.layout import Layout
from features.pipeline.build import BuildError, PipelineConfigs, build_tables
from features.pipeline.replay import replay_events


def stored_events(layout: Layout) -> tuple[pa.Table, pa.Table, str]:
    """The validated event store and its bot scores."""
    from features.ingest.event_store import read_bot_scores, read_events

    events = read_events(layout)
    if events.num_rows == 0:
        raise BuildError(f"no events stored under {layout.events}; run `intent validate`")
    return events, read_bot_scores(layout), f"store:{layout.events}"


def simulated_events(
    layout: Layout, users: int, days: int, seed: int
) -> tuple[pa.Table, pa.Table, str]:
    """A fresh in-memory simulation, bot-scored the way `intent validate` scores it."""
    from core.settings import load_config
    from features.config import EventsConfig, FunnelConfig, SignalsConfig
    from features.ingest.bots import score_sessions
    from features.simulator import SimulatorConfig, simulate

    result = simulate(
        load_config(SimulatorConfig, layout=layout),
        load_config(SignalsConfig, layout=layout),
        load_config(FunnelConfig, layout=layout),
        users=users,
        days=days,
        seed=seed,
    )
    bots = score_sessions(result.events, load_config(EventsConfig, layout=layout).bots)
    return result.events, bots, f"simulated: {users} users x {days} days, seed {seed}"


def bench_build(
    events: pa.Table,
    bot_scores: pa.Table,
    configs: PipelineConfigs,
    workers: Sequence[int],
) -> dict:
    """Replay throughput on one core, then whole builds with each worker count."""
    flagged = bot_scores.filter(pc.fill_null(bot_scores.column("is_bot"), False))
    human = events.filter(
        pc.invert(pc.is_in(events.column("session_id"), value_set=flagged.column("session_id")))
    )
    wall, cpu = time.perf_counter(), time.process_time()
    replayed = replay_events(human, configs.signals, workers=1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    builds = []
    for n in workers:
        start = time.perf_counter()
        tables = build_tables(events, bot_scores, configs, workers=n)
        total = time.perf_counter() - start
        builds.append(
            {
                "workers": n,
                "seconds": round(total, 3),
                "events_per_s": round(events.num_rows / total),
                "stages_s": {k: round(v, 3) for k, v in tables.summary.seconds.items()},
            }
        )
    return {
        "events": events.num_rows,
        "replayed_events": replayed.events,
        "sessions": replayed.sessions,
        "decision_points": replayed.decisions.num_rows,
        "replay_one_core": {
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "events_per_s": round(replayed.events / wall),
            "events_per_cpu_s": round(replayed.events / cpu),
        },
        "build": builds,
    }
