"""Per-session bot score: flagged sessions are kept in the store but left out of training.

Four pieces of evidence, each a degree in 0..1: a crawler / headless / HTTP-library user
agent, a sustained event rate no human keeps up, near-constant gaps between events (a low
robust coefficient of variation: MAD over median), and no scroll or hover at all. They
combine by noisy-OR with the weights in `configs/events.yaml` (`bots`): one decisive signal
can flag a session, weak ones only together. Behavioural evidence needs `min_events`
events; shorter sessions score on the user agent alone.

A session with any event flagged `assistive` (screen reader, keyboard navigation), or read
as assistive from its own events by `features.signals.assistive_reason` (a screen-reader user
agent, keyboard-only navigation, long pauses without a pointer; given the signals config),
scores 0: its evidence (no scroll or hover, even keyboard rhythm, long pauses) is how
assistive technology looks, and a false flag would drop those users from training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import BotConfig, SignalsConfig
from features.events import EventType

BOT_SCORES_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("bot_score", pa.float64(), nullable=False),
        pa.field("is_bot", pa.bool_(), nullable=False),
    ]
)

# The evidence, one column per signal (0..1), in `bot_signals`.
SIGNALS: tuple[str, ...] = ("user_agent", "event_rate", "regular_gaps", "no_scroll_hover")
_ACTIVITY = pa.array([EventType.SCROLL.value, EventType.HOVER.value])
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def bot_signals(
    events: pa.Table, cfg: BotConfig, signals: SignalsConfig | None = None
) -> pd.DataFrame:
    """Per session: `events, duration_s, rate_per_min, gap_cv`, the four 0..1 signals,
    `assistive` and `score` (0 for assistive sessions: flagged, or inferred with `signals`).

    Needs `session_id, ts, type, user_agent`; rows need not be sorted.
    """
    ua_bot = pc.match_substring_regex(
        pc.fill_null(events["user_agent"], ""),
        pattern="|".join(f"(?:{p})" for p in cfg.user_agent.patterns),
        ignore_case=True,
    )
    frame = pd.DataFrame(
        {
            "session_id": events["session_id"].to_pandas(),
            "ts": pc.cast(events["ts"], pa.int64()).to_numpy() / 1e6,
            "activity": pc.is_in(events["type"], value_set=_ACTIVITY).to_numpy(False),
            "ua_bot": ua_bot.to_numpy(zero_copy_only=False),
            "assistive": _assistive(events),
        }
    ).sort_values(["session_id", "ts"], kind="stable")
    frame["gap"] = frame.groupby("session_id", sort=False)["ts"].diff()
    # robust spread of the gaps: |gap - median gap|, whose median over the session is the MAD
    gap_median = frame.groupby("session_id", sort=False)["gap"].transform("median")
    frame["gap_dev"] = (frame["gap"] - gap_median).abs()
    grouped = frame.groupby("session_id", sort=True)
    per = grouped.agg(
        events=("ts", "size"),
        first=("ts", "min"),
        last=("ts", "max"),
        gap_median=("gap", "median"),
        gap_mad=("gap_dev", "median"),
        activity=("activity", "any"),
        ua_bot=("ua_bot", "any"),
        assistive=("assistive", "any"),
    )
    if signals is not None:
        per["assistive"] |= _inferred(events, per, signals)
    per["duration_s"] = per["last"] - per["first"]
    # a burst of events in under a second counts as one second, not an infinite rate
    per["rate_per_min"] = (per["events"] - 1) / per["duration_s"].clip(lower=1.0) * 60.0
    median = per["gap_median"].fillna(0.0).to_numpy()
    mad = per["gap_mad"].fillna(0.0).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        # robust coefficient of variation (MAD scaled to a normal's sigma, over the median):
        # a script's one long pause (a page load) does not make its clockwork look human
        per["gap_cv"] = np.where(median > 0, _MAD_TO_SIGMA * mad / median, 0.0)
    enough = (per["events"] >= cfg.min_events).to_numpy()
    rate, gaps = cfg.event_rate, cfg.regular_gaps
    per["user_agent"] = per["ua_bot"].astype(float)
    per["event_rate"] = np.where(
        enough, _ramp(per["rate_per_min"], rate.human_per_min, rate.bot_per_min), 0.0
    )
    per["regular_gaps"] = np.where(enough, _ramp(per["gap_cv"], gaps.human_cv, gaps.bot_cv), 0.0)
    per["no_scroll_hover"] = np.where(enough & ~per["activity"].to_numpy(), 1.0, 0.0)
    weights = {
        "user_agent": cfg.user_agent.weight,
        "event_rate": rate.weight,
        "regular_gaps": gaps.weight,
        "no_scroll_hover": cfg.no_scroll_hover.weight,
    }
    keep = np.ones(len(per))
    for name in SIGNALS:
        keep *= 1.0 - weights[name] * per[name].to_numpy()
    per["score"] = np.where(per["assistive"].to_numpy(), 0.0, 1.0 - keep)
    columns = ["events", "duration_s", "rate_per_min", "gap_cv", *SIGNALS, "assistive", "score"]
    return per[columns]


def score_sessions(
    events: pa.Table, cfg: BotConfig, assistive: SignalsConfig | None = None
) -> pa.Table:
    """`session_id, bot_score, is_bot` per session; flagged above `cfg.threshold`; with
    `assistive` (the signals config) inferred assistive sessions are spared too."""
    if events.num_rows == 0:
        return BOT_SCORES_SCHEMA.empty_table()
    signals = bot_signals(events, cfg, assistive)
    score = signals["score"].to_numpy().clip(0.0, 1.0)
    return pa.Table.from_arrays(
        [
            pa.array(signals.index.to_numpy(dtype=object), pa.string()),
            pa.array(score, pa.float64()),
            pa.array(score > cfg.threshold, pa.bool_()),
        ],
        schema=BOT_SCORES_SCHEMA,
    )


def _inferred(events: pa.Table, per: pd.DataFrame, cfg: SignalsConfig) -> pd.Series:
    """Per session: `assistive_reason` says assistive from the session's own events. Only
    sessions that can qualify are replayed: no pointer event, or a user agent that matches."""
    from features.signals import Ev, assistive_reason, replay

    patterns = cfg.assistive.user_agent_patterns
    candidates = ~per["activity"]
    if patterns:
        hint = pc.match_substring_regex(
            pc.fill_null(events["user_agent"], ""),
            pattern="|".join(f"(?:{p})" for p in patterns),
            ignore_case=True,
        )
        hinted = pc.unique(pc.filter(events["session_id"], hint)).to_pylist()
        candidates |= per.index.isin(hinted)
    out = pd.Series(False, index=per.index)
    wanted = per.index[candidates]
    if len(wanted) == 0:
        return out
    mask = pc.is_in(events["session_id"], value_set=pa.array(wanted, pa.string()))
    part = events.filter(mask)
    keys = [k for k in ("session_id", "ts", "event_id") if k in part.column_names]
    part = part.sort_by([(k, "ascending") for k in keys])
    ts = (pc.cast(part["ts"], pa.int64()).to_numpy() / 1e6).tolist()
    cols = [
        part[name].to_pylist() if name in part.column_names else [None] * part.num_rows
        for name in ("type", "step", "target", "value", "user_agent")
    ]
    evs = [Ev(t, *rest) for t, *rest in zip(ts, *cols, strict=True)]
    sids = part["session_id"].to_pylist()
    start = 0
    for end in range(1, len(sids) + 1):
        if end == len(sids) or sids[end] != sids[start]:
            state = replay(sids[start], evs[start:end], cfg)
            out[sids[start]] = assistive_reason(state, cfg) is not None
            start = end
    return out


def _assistive(events: pa.Table) -> np.ndarray:
    """Per row: the event says assistive technology is in use (absent column or null: no)."""
    if "assistive" not in events.column_names:
        return np.zeros(events.num_rows, dtype=bool)
    return pc.fill_null(events["assistive"], False).to_numpy(zero_copy_only=False)


def _ramp(x: pd.Series, zero_at: float, one_at: float) -> np.ndarray:
    """Linear 0..1 between `zero_at` and `one_at` (either direction), clipped."""
    return ((x.to_numpy(dtype=float) - zero_at) / (one_at - zero_at)).clip(0.0, 1.0)
