"""Bot rules never flag a session that says it uses assistive technology."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_factory import typed
from test_bots import BROWSER, HUMAN_GAPS, HUMAN_TYPES, scores, session

KEYBOARD_TYPES = ["view", "click", "cta_fail", "field_error", "click"]  # no scroll, no hover
AGENTS = [BROWSER, "python-requests/2.31.0", "Googlebot/2.1", None]


def flagged(rows: list[dict], where: int) -> list[dict]:
    """`rows` with the assistive flag on one event only (the flag is sticky per session)."""
    return [{**r, "assistive": i == where} for i, r in enumerate(rows)]


def test_keyboard_rhythm_is_flagged_without_the_flag_and_spared_with_it(events_cfg) -> None:
    """The control: the very same even, pointer-free rhythm is a bot unless flagged."""
    cfg = events_cfg.bots
    rows = session("kbd", [0.5] * 30, KEYBOARD_TYPES, BROWSER)
    assert scores(rows, cfg)["kbd"][1] is True
    score, is_bot = scores(flagged(rows, 3), cfg)["kbd"]
    assert (score, is_bot) == (0.0, False)


def test_old_data_without_the_column_scores_as_before(events_cfg) -> None:
    rows = session("human", HUMAN_GAPS, HUMAN_TYPES, BROWSER)
    table = typed(rows)
    without = table.drop_columns(["assistive"])
    from features.ingest.bots import score_sessions

    assert score_sessions(without, events_cfg.bots).equals(score_sessions(table, events_cfg.bots))


@settings(max_examples=80, deadline=None)
@given(
    gaps=st.lists(st.floats(0.01, 120), min_size=1, max_size=40),
    types=st.lists(st.sampled_from(HUMAN_TYPES + KEYBOARD_TYPES), min_size=1, max_size=6),
    agent=st.sampled_from(AGENTS),
    data=st.data(),
)
def test_assistive_sessions_are_never_bots(events_cfg, gaps, types, agent, data) -> None:
    rows = session("s", gaps, types, agent)
    where = data.draw(st.integers(0, len(rows) - 1))
    assert scores(flagged(rows, where), events_cfg.bots)["s"] == (0.0, False)
