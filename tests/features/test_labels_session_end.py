"""`label_kind: session_end`: the session ends without completing the step or the goal."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_factory import epoch, no_bots, session, table

from features.config import LabelKind
from features.pipeline.build import build_tables
from features.pipeline.labels import completion_events, label_session_end, session_ends

GAP = 30 * 60


def decisions(*rows: tuple[str, str, float]) -> pa.Table:
    """(session, step, seconds after T0) decision rows."""
    sessions, steps, ts = zip(*rows, strict=True)
    return pa.table(
        {"session_id": list(sessions), "step": list(steps), "request_ts": [epoch(s) for s in ts]}
    )


def labels(d: pa.Table, events: pa.Table, data_end: float) -> list[int | None]:
    out = label_session_end(
        d,
        completion_events(events),
        session_ends(events),
        session_gap_s=GAP,
        data_end=epoch(data_end),
    )
    return out.column("label").to_pylist()


def test_completion_later_in_the_session_is_not_abandonment() -> None:
    events = table(session("s", [(0, "view", "cart"), (400, "step_complete", "cart")]))
    assert labels(decisions(("s", "cart", 10)), events, data_end=10_000) == [0]


def test_goal_in_the_session_counts_however_late() -> None:
    # far past any 30-min horizon, but the same session: not abandoned
    rows = [(0, "view", "browse")] + [(i * 600, "view", "browse") for i in range(1, 20)]
    events = table(session("s", [*rows, (12_000, "goal", "browse")]))
    assert labels(decisions(("s", "browse", 5)), events, data_end=50_000) == [0]


def test_session_that_ends_without_completion_is_abandonment() -> None:
    events = table(
        session("s", [(0, "view", "cart"), (50, "view", "cart")]),
        session("t", [(0, "view", "cart"), (60, "goal", "cart")], user_id="u2"),
    )
    # a completion in another session of another user changes nothing for s
    assert labels(decisions(("s", "cart", 10), ("t", "cart", 10)), events, 10_000) == [1, 0]


def test_other_step_or_earlier_completion_does_not_count() -> None:
    events = table(
        session(
            "s",
            [(0, "step_complete", "cart"), (5, "view", "checkout"), (9, "step_complete", "browse")],
        )
    )
    assert labels(decisions(("s", "cart", 2)), events, data_end=10_000) == [1]


def test_open_session_at_the_end_of_the_data_is_censored() -> None:
    events = table(session("s", [(0, "view", "cart"), (100, "view", "cart")]))
    # last event at 100 s: the session may go on until 100 s + gap
    assert labels(decisions(("s", "cart", 10)), events, data_end=100 + GAP - 1) == [None]
    assert labels(decisions(("s", "cart", 10)), events, data_end=100 + GAP) == [1]


def test_row_order_is_kept_and_columns_checked() -> None:
    events = table(
        session("a", [(0, "view", "x"), (5, "step_complete", "x")]),
        session("b", [(0, "view", "x")], user_id="u2"),
    )
    d = decisions(("b", "x", 1), ("a", "x", 1), ("b", "x", 0))
    assert labels(d, events, data_end=10_000) == [1, 0, 1]
    with pytest.raises(KeyError, match="session_id"):
        label_session_end(
            d.drop(["session_id"]),
            completion_events(events),
            session_ends(events),
            session_gap_s=GAP,
            data_end=0.0,
        )


EVENT = st.tuples(
    st.integers(0, 3_000),
    st.sampled_from(["view", "click", "step_complete", "goal"]),
    st.sampled_from(["a", "b"]),
)


@settings(max_examples=60, deadline=None)
@given(
    sessions=st.lists(st.lists(EVENT, min_size=1, max_size=6), min_size=1, max_size=4),
    points=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["a", "b"]), st.integers(0, 3_000)),
        min_size=1,
        max_size=6,
    ),
    data_end=st.integers(0, 6_000),
)
def test_matches_a_plain_reading_of_the_definition(sessions, points, data_end) -> None:
    """Against a direct reading: 0 if the step or goal follows in the session, else 1 once
    the session is over (last event + gap <= end of data), else unknown."""
    gap = 1_000
    rows = [session(f"s{i}", sorted(events), user_id=f"u{i}") for i, events in enumerate(sessions)]
    events = table(*rows)
    points = [(f"s{i % len(sessions)}", step, t) for i, step, t in points]
    d = decisions(*points)
    got = label_session_end(
        d,
        completion_events(events),
        session_ends(events),
        session_gap_s=gap,
        data_end=epoch(data_end),
    )

    expected = []
    for sid, step, t in points:
        evs = sessions[int(sid[1:])]
        done = any(
            s >= t and (kind == "goal" or (kind == "step_complete" and where == step))
            for s, kind, where in evs
        )
        over = max(s for s, _, _ in evs) + gap <= data_end
        expected.append(0 if done else (1 if over else None))
    assert got.column("label").to_pylist() == expected


def _labels_by_moment(points: pa.Table) -> dict[tuple[str, str], int]:
    keys = zip(points["session_id"].to_pylist(), points["moment"].to_pylist(), strict=True)
    return dict(zip(keys, points["label"].to_pylist(), strict=True))


def test_build_label_kind_changes_what_a_long_session_means(configs) -> None:
    """A shopper who struggles, browses on for 40 minutes and then buys: the 30-min horizon
    calls that abandonment, session_end does not; a session that just ends is 1 for both."""
    fail = ("cta_fail", "cart", "cta")
    struggle = [(0, "view", "cart"), (1, *fail), (2, *fail), (3, *fail)]
    browsing = [(600 * i, "view", "cart") for i in range(1, 5)]
    bought = [*struggle, *browsing, (2_500, "goal", "cart")]
    gone = [*struggle, (9, "exit", "cart")]
    later = [(6_000, "view", "cart"), (6_001, "exit", "cart")]  # data goes on past both
    events = table(
        session("bought", bought, user_id="a"),
        session("gone", gone, user_id="b"),
        session("late", later, user_id="c"),
    )
    horizon = _labels_by_moment(build_tables(events, no_bots(events), configs).decision_points)
    signals = configs.signals.model_copy(update={"label_kind": LabelKind.SESSION_END})
    ended_cfg = dataclasses.replace(configs, signals=signals)
    ended = _labels_by_moment(build_tables(events, no_bots(events), ended_cfg).decision_points)
    assert horizon[("bought", "cta_fail")] == 1
    assert ended[("bought", "cta_fail")] == 0
    assert horizon[("gone", "cta_fail")] == ended[("gone", "cta_fail")] == 1
