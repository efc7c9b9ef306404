"""The oracle is the true abandonment probability: calibrated, informative, and keyed so
that decision points can be asof-joined onto it."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sim_helpers import START, Configs, completed_steps, replay
from sklearn.metrics import roc_auc_score

from features.simulator import simulate
from features.simulator.tables import ORACLE_SCHEMA


def _entries(result):
    """The oracle at entering each (session, step) the first time, and whether it was left
    without completing the step."""
    con = duckdb.connect()
    con.register("oracle", result.oracle)
    first = con.execute(
        """select session_id, step, arg_min(p_abandon, ts_from) as p
           from oracle where step_visit = 1 group by all"""
    ).fetchall()
    done = completed_steps(result.events)
    p = np.array([row[2] for row in first])
    left = np.array([(sid, step) not in done for sid, step, _ in first])
    return p, left


def test_oracle_is_calibrated_on_step_entry(cfgs: Configs) -> None:
    """With no triggers the probability drawn at entry is the one that decides: in every
    band of p the share of users who leave matches the band's mean p."""
    result = simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 2_000, 21, 17, start=START)
    p, left = _entries(result)
    assert len(p) > 5_000
    assert abs(p.mean() - left.mean()) < 0.02
    for low, high in ((0.0, 0.1), (0.1, 0.4), (0.4, 0.7), (0.7, 1.0)):
        band = (p >= low) & (p < high)
        assert band.sum() > 100, (low, high)
        assert abs(p[band].mean() - left[band].mean()) < 0.06, (low, high)
    assert roc_auc_score(left, p) > 0.8


def test_oracle_rows_are_well_formed(small_run) -> None:
    oracle = small_run.oracle
    assert oracle.schema.equals(ORACLE_SCHEMA)
    p = oracle["p_abandon"]
    assert pc.min(p).as_py() >= 0 and pc.max(p).as_py() <= 1
    assert oracle.equals(oracle.sort_by([("session_id", "ascending"), ("ts_from", "ascending")]))
    # every step visit of a step not completed yet opens with a row at its view event
    views = small_run.events.filter(pc.equal(small_run.events["type"], "view"))
    keyed = set(zip(oracle["session_id"].to_pylist(), oracle["ts_from"].to_pylist(), strict=True))
    at_view = sum(
        (sid, ts) in keyed
        for sid, ts in zip(views["session_id"].to_pylist(), views["ts"].to_pylist(), strict=True)
    )
    assert at_view > 0.9 * views.num_rows


def test_oracle_beats_chance_at_decision_points_and_changes_with_triggers(
    cfgs: Configs, capped_run
) -> None:
    result, _ = capped_run
    points = replay(result.events, cfgs.signals)
    con = duckdb.connect()
    con.register(
        "points",
        pa.table(
            {
                "i": list(range(len(points))),
                "session_id": [p.session_id for p in points],
                "step": [p.moment.step for p in points],
                "ts": pa.array([round(p.moment.ts * 1e6) for p in points], pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            }
        ),
    )
    oracle = result.oracle
    con.register("oracle", oracle)
    joined = con.execute(
        """select t.i, o.p_abandon from points t asof left join oracle o
           on t.session_id = o.session_id and t.step = o.step and t.ts >= o.ts_from
           order by t.i"""
    ).fetchall()
    p = np.array([row[1] for row in joined], dtype=float)
    done = completed_steps(result.events)
    left = np.array([(pt.session_id, pt.moment.step) not in done for pt in points])
    assert not np.isnan(p).any()
    assert p[left].mean() > p[~left].mean() + 0.3
    assert roc_auc_score(left, p) > 0.8
    # triggers change the latent state: rows at trigger_outcome times
    outcomes = result.events.filter(pc.equal(result.events["type"], "trigger_outcome"))
    at = set(zip(outcomes["session_id"].to_pylist(), outcomes["ts"].to_pylist(), strict=True))
    changed = sum(
        (sid, ts) in at
        for sid, ts in zip(
            oracle["session_id"].to_pylist(), oracle["ts_from"].to_pylist(), strict=True
        )
    )
    assert changed > 0.5 * outcomes.num_rows
    helped = oracle.filter(pc.equal(oracle["need"], "none"))
    assert helped.num_rows > 0
