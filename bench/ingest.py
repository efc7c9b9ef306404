"""`intent bench ingest`: throughput of validation, the store write and the importers.

Synthetic raw events (no simulator needed): users with sessions of random gaps, a share of
rows broken in every way validation knows, exact duplicates, no session ids (so
sessionization runs). Timings use wall-clock `perf_counter` on the current machine.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.config import EventsConfig

_TYPES = np.array(["view", "click", "scroll", "hover", "back", "cta_fail", "step_complete"])
_TYPE_P = np.array([0.2, 0.3, 0.2, 0.1, 0.05, 0.1, 0.05])
_STEPS = np.array(["welcome", "profile", "identity_verification", "funding"])


def synthetic_raw(rows: int, seed: int, start: datetime) -> pa.Table:
    """`rows` raw events: ~2 % broken (bad type, depth, ts text, ids), ~1 % exact duplicates.

    `ts` is ISO text, as a CSV export would carry it, so timestamp parsing is measured too.
    """
    rng = np.random.default_rng(seed)
    users = max(rows // 40, 1)
    user = rng.integers(0, users, rows)
    gaps = rng.lognormal(1.5, 1.0, rows)
    gaps[rng.random(rows) < 0.03] += 3600.0  # session breaks
    order = np.argsort(user, kind="stable")
    cum = np.cumsum(gaps[order])
    firsts = np.r_[0, np.flatnonzero(np.diff(user[order])) + 1]
    counts = np.diff(np.r_[firsts, rows])
    since_first = cum - np.repeat(cum[firsts] - gaps[order][firsts], counts)
    user_start = rng.uniform(0, 10 * 86400, users)
    offsets = np.empty(rows)
    offsets[order] = since_first + user_start[user[order]]
    ts_us = (offsets * 1e6).astype(np.int64) + int(start.timestamp() * 1e6)
    kinds = rng.choice(_TYPES, rows, p=_TYPE_P)
    value = np.where(kinds == "scroll", rng.uniform(0, 100, rows), np.nan)
    value = np.where(kinds == "hover", rng.exponential(2.0, rows), value)
    ts_text = pa.compute.strftime(
        pa.array(ts_us, pa.timestamp("us", "UTC")), format="%Y-%m-%dT%H:%M:%SZ"
    ).to_numpy(zero_copy_only=False)
    table: dict[str, Any] = {
        "event_id": np.char.add("e", np.arange(rows).astype(str)).astype(object),
        "user_id": np.char.add("u", user.astype(str)).astype(object),
        "ts": ts_text.astype(object),
        "type": kinds.astype(object),
        "step": rng.choice(_STEPS, rows).astype(object),
        "value": value,
        "user_agent": np.full(rows, "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0", object),
    }
    broken = np.flatnonzero(rng.random(rows) < 0.02)
    for i, j in enumerate(broken):
        kind = i % 4
        if kind == 0:
            table["type"][j] = "tap"
        elif kind == 1:
            table["type"][j], table["value"][j] = "scroll", 140.0
        elif kind == 2:
            table["ts"][j] = "yesterday"
        else:
            table["event_id"][j] = None
    raw = pa.table(
        {
            name: pa.array(col, pa.float64() if name == "value" else pa.string(), from_pandas=True)
            for name, col in table.items()
        }
    )
    dup = np.flatnonzero(rng.random(rows) < 0.01)
    return pa.concat_tables([raw, raw.take(dup)])


def segment_lines(rows: int, seed: int, start: datetime) -> list[bytes]:
    """`rows` Segment track messages as JSON lines."""
    rng = np.random.default_rng(seed)
    names = ["Step Viewed", "CTA Clicked", "Screen Scrolled", "Help Hovered", "Step Completed"]
    out = []
    for i in range(rows):
        ts = start + timedelta(seconds=float(i) * 2.0)
        message = {
            "type": "track",
            "event": names[int(rng.integers(0, len(names)))],
            "messageId": f"m{i}",
            "userId": f"u{i // 50}",
            "properties": {"step": "profile", "depth": 40.0, "duration_s": 1.5},
            "context": {"userAgent": "Mozilla/5.0", "timezone": "Europe/Paris"},
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
        }
        out.append(json.dumps(message).encode())
    return out


def bench_ingest(rows: int, seed: int, workdir: Path, cfg: EventsConfig) -> dict[str, Any]:
    """Time validation (pure), ingestion into a fresh store, the idempotent re-run, imports."""
    from core.layout import Layout
    from features.ingest.event_store import ingest
    from features.ingest.importers.mapping import SegmentMapping, load_mapping
    from features.ingest.importers.segment import map_messages
    from features.ingest.validate import validate_events

    now = datetime.now(UTC)
    start = now - timedelta(days=20)
    raw = synthetic_raw(rows, seed, start)
    layout = Layout.under(workdir, configs=workdir / "configs")

    t0 = time.perf_counter()
    result = validate_events(raw, cfg, now, steps=_STEPS.tolist())
    t_validate = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = ingest(layout, raw, cfg, now, steps=_STEPS.tolist())
    t_ingest = time.perf_counter() - t0
    t0 = time.perf_counter()
    rerun = ingest(layout, raw, cfg, now, steps=_STEPS.tolist())
    t_rerun = time.perf_counter() - t0

    segment_rows = min(rows, 100_000)
    lines = segment_lines(segment_rows, seed, start)
    mapping = load_mapping(Layout.from_env().config_file("mappings/segment.yaml"), SegmentMapping)
    t0 = time.perf_counter()
    imported = map_messages(lines, mapping, source="bench", steps=_STEPS.tolist())
    t_segment = time.perf_counter() - t0

    s = result.summary
    return {
        "rows_in": raw.num_rows,
        "valid": s.valid,
        "quarantined": s.quarantined_total,
        "duplicates_removed": s.duplicates_removed,
        "sessions_derived": s.sessions_derived,
        "validate_s": round(t_validate, 3),
        "validate_rows_per_s": round(raw.num_rows / t_validate),
        "ingest_s": round(t_ingest, 3),
        "ingest_rows_per_s": round(raw.num_rows / t_ingest),
        "bot_sessions_scored": report.bot_sessions_scored,
        "rerun_s": round(t_rerun, 3),
        "rerun_written": rerun.written,
        "segment_lines": segment_rows,
        "segment_events": imported.summary.events,
        "segment_s": round(t_segment, 3),
        "segment_lines_per_s": round(segment_rows / t_segment),
    }
