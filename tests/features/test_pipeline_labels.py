"""Labels on hand-made sessions: completed in the horizon, after it, goal, abandoned."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pipeline_factory import epoch, no_bots, session, table

from features.pipeline.build import build_tables
from features.pipeline.labels import attach_oracle, completion_events, label_decisions

HORIZON = 30 * 60


def decisions(*rows: tuple[str, str, float]) -> pa.Table:
    """(user, step, seconds after T0) decision rows."""
    users, steps, ts = zip(*rows, strict=True)
    return pa.table(
        {"user_id": list(users), "step": list(steps), "request_ts": [epoch(s) for s in ts]}
    )


def completions(*rows: tuple[str, str | None, str, float]) -> pa.Table:
    users, steps, types, ts = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": list(users),
            "step": list(steps),
            "type": list(types),
            "ts": [epoch(s) for s in ts],
        }
    )


def labels(d: pa.Table, c: pa.Table, data_end: float = 10 * HORIZON) -> list[int | None]:
    out = label_decisions(d, c, horizon_s=HORIZON, data_end=epoch(data_end))
    return out.column("label").to_pylist()


def test_completed_within_horizon_is_not_abandonment() -> None:
    d = decisions(("u", "profile", 100))
    c = completions(("u", "profile", "step_complete", 100 + HORIZON - 1))
    assert labels(d, c) == [0]


def test_completed_after_horizon_is_abandonment() -> None:
    d = decisions(("u", "profile", 100))
    c = completions(("u", "profile", "step_complete", 100 + HORIZON + 1))
    assert labels(d, c) == [1]


def test_goal_completes_every_step_but_only_for_that_user() -> None:
    d = decisions(("u", "funding", 100), ("v", "funding", 100))
    c = completions(("u", None, "goal", 200))
    assert labels(d, c) == [0, 1]


def test_other_steps_and_earlier_completions_do_not_count() -> None:
    d = decisions(("u", "profile", 100))
    c = completions(
        ("u", "welcome", "step_complete", 150),  # another step
        ("u", "profile", "step_complete", 50),  # before the decision
    )
    assert labels(d, c) == [1]


def test_completion_at_the_decision_instant_counts() -> None:
    d = decisions(("u", "profile", 100))
    c = completions(("u", "profile", "step_complete", 100))
    assert labels(d, c) == [0]


def test_unknown_outcome_at_the_end_of_the_data_is_censored() -> None:
    d = decisions(("u", "profile", 100), ("u", "welcome", 100))
    c = completions(("u", "welcome", "step_complete", 200))
    # the data ends 10 min after the decision: profile's outcome is unknown, welcome's is not
    assert labels(d, c, data_end=700) == [None, 0]


def test_row_order_is_kept_and_columns_checked() -> None:
    d = decisions(("b", "x", 300), ("a", "x", 100), ("c", "x", 200))
    c = completions(("a", "x", "step_complete", 150))
    out = label_decisions(d, c, horizon_s=HORIZON, data_end=epoch(1e6))
    assert out.column("user_id").to_pylist() == ["b", "a", "c"]
    assert out.column("label").to_pylist() == [1, 0, 1]
    with pytest.raises(KeyError, match="request_ts"):
        label_decisions(d.drop(["request_ts"]), c, horizon_s=HORIZON, data_end=0.0)


def test_completions_belong_to_the_session_user_even_before_identify() -> None:
    rows = [(0, "view", "profile"), (5, "step_complete", "profile")]
    events = table(session("s1", rows, user_id=None, anonymous_id="anon-1"))
    out = completion_events(events)
    assert out.column("user_id").to_pylist() == ["anon-1"]
    mixed = session("s2", rows, user_id=None, anonymous_id="anon-2")
    mixed[1]["user_id"] = "u-known"  # identified on the second event
    assert completion_events(table(mixed)).column("user_id").to_pylist() == ["u-known"]


def test_oracle_is_the_latest_probability_in_force() -> None:
    d = pa.table(
        {
            "session_id": ["s", "s", "s"],
            "step": ["profile", "profile", "funding"],
            "request_ts": [epoch(5), epoch(50), epoch(50)],
        }
    )
    oracle = pa.table(
        {
            "session_id": ["s", "s"],
            "step": ["profile", "profile"],
            "ts_from": [epoch(0), epoch(40)],
            "p_abandon": [0.2, 0.7],
        }
    )
    assert attach_oracle(d, oracle).column("oracle_p").to_pylist() == [0.2, 0.7, None]


def test_build_labels_hand_made_sessions(configs) -> None:
    fail = ("cta_fail", "profile", "cta")
    completed = [
        (0, "view", "profile"),
        (1, *fail),
        (2, *fail),
        (3, *fail),
        (60, "step_complete", "profile"),
    ]
    abandoned = [(0, "view", "profile"), (1, *fail), (2, *fail), (3, *fail), (9, "exit", "profile")]
    # a third session, much later, keeps the data going past both horizons
    later = [(20_000, "view", "welcome"), (20_001, "exit", "welcome")]
    events = table(
        session("done", completed, user_id="a"),
        session("gone", abandoned, user_id="b"),
        session("late", later, user_id="c"),
    )
    points = build_tables(events, no_bots(events), configs).decision_points
    got = {
        (s, m): label
        for s, m, label in zip(
            points["session_id"].to_pylist(),
            points["moment"].to_pylist(),
            points["label"].to_pylist(),
            strict=True,
        )
    }
    assert got[("done", "cta_fail")] == 0
    assert got[("done", "pause")] == 0  # paused at 15 s and 33 s, completed at 60 s
    assert got[("gone", "cta_fail")] == 1
    assert ("gone", "pause") not in got  # exited before the first checkpoint
