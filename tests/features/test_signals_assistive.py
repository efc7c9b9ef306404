"""Assistive technology inferred from a session's own events (features.signals.assistive_reason):
the one definition, the same offline (replay, bot rules) and online (the server's live state)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_factory import REPO_CONFIGS

from core.settings import load_config
from features.config import EventsConfig, SignalsConfig
from features.ingest.bots import bot_signals
from features.signals import Ev, assistive_reason, replay
from serving.sessions import LiveEvent, MemorySessionStore

POINTER = ["scroll", "hover"]
NEUTRAL = ["view", "click", "cta_fail", "field_error", "back", "help_open"]
SCREEN_READER_UA = "Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 JAWS/2024"
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0"

gaps = st.floats(0.1, 90.0)
sessions = st.lists(
    st.tuples(gaps, st.sampled_from([*POINTER, *NEUTRAL, "key"])), min_size=1, max_size=30
)


def events(seq, ua: str | None = BROWSER_UA, t0: float = 1_741_000_000.0) -> list[Ev]:
    out, t = [Ev(t0, "view", "profile", None, None, ua)], t0
    for gap, etype in seq:
        t = round(t + gap, 6)  # stored times are whole microseconds
        value = 50.0 if etype == "scroll" else (2.0 if etype == "hover" else None)
        out.append(Ev(t, etype, None, "Tab" if etype == "key" else "x", value, ua))
    return out


def reason(evs: list[Ev], cfg: SignalsConfig) -> str | None:
    return assistive_reason(replay("s", evs, cfg), cfg)


@given(seq=sessions)
def test_a_pointer_event_rules_out_the_behavioural_criteria(signals_cfg, seq) -> None:
    evs = events(seq)
    has_pointer = any(e.type in POINTER for e in evs)
    keys = sum(e.type == "key" for e in evs)
    got = reason(evs, signals_cfg)
    if has_pointer:
        assert got is None
    elif keys >= signals_cfg.assistive.keyboard_only_min_events:
        assert got == "keyboard_only"
    else:
        assert got in (None, "long_pauses_without_pointer")


@given(seq=sessions)
def test_a_screen_reader_user_agent_is_enough_and_sticks(signals_cfg, seq) -> None:
    evs = events(seq, SCREEN_READER_UA)
    assert reason(evs, signals_cfg) == "user_agent"
    # the hint on the first event only: later events without it change nothing
    later = [evs[0], *(e._replace(user_agent=None) for e in evs[1:])]
    assert reason(later, signals_cfg) == "user_agent"
    assert reason(events(seq, BROWSER_UA), signals_cfg) != "user_agent"


@given(n=st.integers(0, 8), gap=st.floats(0.1, 200.0))
def test_long_pauses_count_only_without_a_pointer(signals_cfg, n, gap) -> None:
    cfg = signals_cfg.model_copy(
        update={
            "assistive": signals_cfg.assistive.model_copy(update={"keyboard_only_min_events": None})
        }
    )
    a = cfg.assistive
    evs = events([(gap, "click")] * n)
    want = n >= a.long_pauses_min and gap >= a.long_pause_s
    assert (reason(evs, cfg) == "long_pauses_without_pointer") is want
    assert reason(events([(gap, "click")] * n + [(1.0, "scroll")]), cfg) is None


@given(seq=sessions)
def test_switched_off_criteria_never_fire(signals_cfg, seq) -> None:
    off = signals_cfg.model_copy(
        update={
            "assistive": signals_cfg.assistive.model_copy(
                update={
                    "user_agent_patterns": [],
                    "keyboard_only_min_events": None,
                    "long_pauses_min": None,
                }
            )
        }
    )
    assert reason(events(seq, SCREEN_READER_UA), off) is None


@settings(max_examples=40, deadline=None)
@given(seq=sessions, ua=st.sampled_from([BROWSER_UA, SCREEN_READER_UA, None]))
def test_online_live_state_offline_replay_and_bot_rules_agree(signals_cfg, seq, ua) -> None:
    """The server folds events one by one; the bot rules replay stored sessions: one answer."""
    evs = events(seq, ua)
    offline = reason(evs, signals_cfg)
    store = MemorySessionStore(signals_cfg, gap_s=1800.0)
    for i, e in enumerate(evs):
        live = LiveEvent(
            f"e{i}", "s", "u", None, e.ts, e.type, e.step, e.target, e.value,
            user_agent=e.user_agent,
        )  # fmt: skip
        store.apply([live])
    online = assistive_reason(store.get("s"), signals_cfg)
    assert online == offline
    table = pa.table(
        {
            "event_id": [f"e{i:03d}" for i in range(len(evs))],
            "session_id": ["s"] * len(evs),
            "ts": pa.array(
                [datetime.fromtimestamp(e.ts, UTC) for e in evs], pa.timestamp("us", "UTC")
            ),
            "type": [e.type for e in evs],
            "step": [e.step for e in evs],
            "target": [e.target for e in evs],
            "value": pa.array([e.value for e in evs], pa.float64()),
            "user_agent": pa.array([e.user_agent for e in evs], pa.string()),
        }
    )
    bots = load_config(EventsConfig, REPO_CONFIGS / EventsConfig.file_name).bots
    spared = bot_signals(table, bots, signals_cfg).loc["s", "assistive"]
    assert bool(spared) == (offline is not None)


def test_data_without_pointer_tracking_is_not_read_as_assistive() -> None:
    """The e-commerce overlay (views only, no scroll or hover tracked) keeps the long-pause
    criterion off, its default: otherwise every shopper would be read as assistive."""
    shop = load_config(SignalsConfig, REPO_CONFIGS / "examples" / "ecommerce" / "signals.yaml")
    assert shop.assistive.long_pauses_min is None
    views = events([(60.0, "view")] * 6)
    assert reason(views, shop) is None
    onboarding = load_config(SignalsConfig, REPO_CONFIGS / "signals.yaml")
    assert reason(views, onboarding) == "long_pauses_without_pointer"  # the control
