"""Helpers of the loop tests: configs, hand-made decision logs, small evaluation setups."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.layout import Layout
from core.settings import load_config
from features.events import EVENT_SCHEMA, conform
from features.pipeline.config import AggregatesConfig
from features.simulator.config import SimulatorConfig
from loop.config import LoopConfig
from loop.evaluate import Setup
from loop.simstore import HistoryConfig
from serving.assemble import Configs
from serving.decision_log import DECISION_COLUMNS, DecisionLog, memory_log

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_CONFIGS = REPO_ROOT / "configs"
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC).timestamp()
STEP = "identity_verification"


def repo_layout(tmp: Path) -> Layout:
    return Layout.under(tmp, configs=REPO_CONFIGS).ensure()


def loop_config() -> LoopConfig:
    return load_config(LoopConfig, REPO_CONFIGS / LoopConfig.file_name)


def small_setup(
    layout: Layout,
    *,
    users: int,
    days: int,
    bundle_dir: Path | None = None,
    steps: dict | None = None,
) -> Setup:
    """An evaluation setup over the repo's configs with a small population."""
    configs = Configs.load(layout)
    evaluation = loop_config().evaluation.model_copy(
        update={"users": users, "days": days, "start_date": date(2025, 3, 1), "workers": 1}
    )
    history = HistoryConfig(
        signals=configs.signals,
        funnel=configs.funnel,
        aggregates=load_config(AggregatesConfig, layout=layout),
        session_gap_s=configs.events.session_gap_minutes * 60.0,
        user_ttl_s=30 * 86_400.0,
    )
    return Setup(
        layout=layout,
        configs=configs,
        simulator=load_config(SimulatorConfig, layout=layout),
        history=history,
        evaluation=evaluation,
        steps=steps or {},
        bundle_dir=bundle_dir,
    )


def decision_row(
    decision_id: str,
    user_id: str,
    ts: float,
    *,
    action: str = "contextual_tip",
    would: str | None = None,
    holdout: bool = False,
    arm: str | None = None,
    moment: str = "pause",
    capped: bool = False,
    cap_reason: str | None = None,
    step: str = STEP,
    source: str = "model",
    version: str | None = "3",
) -> dict[str, Any]:
    """One decision-log row (serving.decision_log.DECISION_COLUMNS)."""
    row = {
        "decision_id": decision_id,
        "ts": ts,
        "user_id": user_id,
        "session_id": f"{user_id}-1",
        "step": step,
        "moment": moment,
        "episode": f"{moment}@{ts:.3f}",
        "score": 0.6,
        "band": "mild",
        "action": action,
        "content": None,
        "source": source,
        "fallback_reason": None if source == "model" else "cold_start",
        "model_version": version if source == "model" else None,
        "arm": "holdout" if holdout else arm,
        "holdout": int(holdout),
        "would_action": would or action,
        "capped": int(capped),
        "cap_reason": cap_reason,
        "reasons": "[]",
        "signals": "{}",
        "device": "mobile",
        "channel": "organic",
        "tz": "Europe/Berlin",
        "latency_ms": 1.0,
        "propensity": 1.0,
        "eligible_actions": f'["none", "{would or action}"]'
        if (would or action) != "none"
        else '["none"]',
        "shadow_score": None,
        "shadow_version": None,
    }
    assert set(row) == set(DECISION_COLUMNS)
    return row


def log_of(rows: list[dict[str, Any]], outcomes: list[tuple[str, str, float]] = ()) -> DecisionLog:
    """A real (in-memory) decision log holding `rows` and `(decision_id, outcome, ts)`."""
    log = memory_log()
    for row in rows:
        log.append_decision(row)
    for decision_id, outcome, ts in outcomes:
        log.append_outcome(decision_id, outcome, ts)
    return log


def completion_events(
    done: list[tuple[str, float]], step: str = STEP, goals: list[tuple[str, float]] = ()
) -> pa.Table:
    """Canonical `step_complete` events `(user_id, epoch s)` on `step`, and `goal` events."""
    typed = [(u, t, "step_complete", step) for u, t in done]
    typed += [(u, t, "goal", "first_transaction") for u, t in goals]
    rows = [
        {
            "event_id": f"c{i}",
            "user_id": user,
            "session_id": f"{user}-1",
            "ts": datetime.fromtimestamp(ts, UTC),
            "type": kind,
            "step": where,
        }
        for i, (user, ts, kind, where) in enumerate(typed)
    ]
    return conform(
        pa.Table.from_pylist(rows, schema=pa.schema([EVENT_SCHEMA.field(k) for k in rows[0]]))
    )
