"""The online store of a simulated world: what the engine's feature read returns in policy
evaluation.

The engine reads stored features through any object with `read(user_id, session_id, step,
now)` (`serving.feature_read`); in simulation this is that object. It answers what the
production store would hold for a held-out population that exists only inside the run:

- `user_*`: the user's earlier sessions of this run, folded by the offline pipeline's own
  code (`features.pipeline.replay` +
  `features.pipeline.aggregates.session_summaries` / `user_stats`): the
  latest row at or before the decision, within the view's TTL. A user with no such row is
  unknown to the store - a cold start - exactly as `features.store.online.OnlineFeatures` reports.
  The batch job is idealised as always up to date (production runs it daily).
  `user_days_since_first_seen` comes from that row at the decision time through
  `signals.derive_user`, the function the on-demand view runs.
- `step_*`: the latest daily snapshot per step of the layout's offline `step_stats`
  (what `intent features materialize` loads), treated as fresh.
- session state and request-time signals come with the request itself (`EnginePolicy`
  sends the live state), so the store does not hold them.

`StoreFedPolicy` is the server's `EnginePolicy` plus one line: it tells the store which
earlier events belong to the session before deciding (the read API carries only ids).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.config import FunnelConfig, SignalsConfig
from features.pipeline.aggregates import session_summaries, user_stats
from features.pipeline.config import AggregatesConfig
from features.pipeline.replay import replay_sorted, sort_events
from features.signals import USER_DERIVED_FIELDS, USER_FIRST_SEEN, derive_user
from features.simulator.hook import Intervention, MomentContext
from loop.engine_policy import EnginePolicy
from serving.engine import DecisionEngine

Value = float | int | str | bool | None
US_PER_S = 1_000_000


@dataclass(frozen=True)
class HistoryConfig:
    """What folding a user's history needs (the feature pipeline's own configs)."""

    signals: SignalsConfig
    funnel: FunnelConfig
    aggregates: AggregatesConfig
    session_gap_s: float
    user_ttl_s: float


def step_snapshot(step_stats: pa.Table) -> dict[str, dict[str, Value]]:
    """The latest row per step of a `step_stats` table, as feature dicts (NaN -> None)."""
    if step_stats.num_rows == 0:
        return {}
    frame = step_stats.to_pandas().sort_values(["step", "event_timestamp"])
    latest = frame.groupby("step", sort=True).tail(1)
    features = [c for c in latest.columns if c.startswith("step_")]
    return {
        str(row["step"]): {name: _clean(row[name]) for name in features}
        for row in latest.to_dict("records")
    }


@dataclass(frozen=True)
class UserRows:
    """A user's `user_stats` rows over their earlier sessions (times in epoch seconds)."""

    times: np.ndarray
    rows: list[dict[str, Value]]

    def at(self, now: float, ttl_s: float) -> dict[str, Value] | None:
        """The latest row at or before `now`, None when there is none or it is stale."""
        i = int(np.searchsorted(self.times, now, side="right")) - 1
        if i < 0 or now - self.times[i] > ttl_s:
            return None
        return self.rows[i]


EMPTY = UserRows(np.empty(0), [])


def user_rows(prior: pa.Table, cfg: HistoryConfig, until: float) -> UserRows:
    """The offline pipeline's `user_stats` rows of one user's earlier events, up to `until`.

    The replay, the session summaries and the rolling windows are the batch build's own
    functions, so a simulated store holds what `intent features build` would write.
    """
    if prior.num_rows == 0:
        return EMPTY
    replayed = replay_sorted(sort_events(prior), cfg.signals)
    summaries = session_summaries(prior, replayed.visits, cfg.funnel, cfg.session_gap_s)
    table = user_stats(summaries, replayed.gaps, cfg.aggregates, until)
    if table.num_rows == 0:
        return EMPTY
    times = pc.cast(table["event_timestamp"], pa.int64()).to_numpy() / US_PER_S
    names = [n for n in table.column_names if n not in ("user_id", "event_timestamp")]
    rows = [{k: _clean(v) for k, v in row.items()} for row in table.select(names).to_pylist()]
    return UserRows(times, rows)


class SimulatedStore:
    """The engine's online reader in a simulation (see the module docstring).

    The session is always known: a live server holds its state from `POST /events`, which the
    simulated dispatcher's signals stand in for. Whether an unknown user then gets the model
    is the engine's cold-start rule (serving.yaml `features.cold_start`).
    """

    def __init__(self, steps: Mapping[str, Mapping[str, Value]], history: HistoryConfig) -> None:
        self.steps = steps
        self.history = history
        self._prior: dict[str, Callable[[], pa.Table]] = {}
        self._users: dict[str, UserRows] = {}
        self.history_builds = 0  # users' histories folded (each a batch-pipeline run)

    def remember(self, ctx: MomentContext) -> None:
        """Note the session's earlier events (read lazily, once per session)."""
        if ctx.session_id not in self._prior:
            self._prior[ctx.session_id] = ctx.prior_events

    def read(
        self, user_id: str, session_id: str, step: str, now_epoch: float
    ) -> tuple[dict[str, Any], bool, bool]:
        values: dict[str, Any] = dict(self.steps.get(step, {}))
        rows = self._users.get(session_id)
        if rows is None:
            prior = self._prior.get(session_id)
            if prior is None:
                raise KeyError(f"session {session_id!r}: no context was remembered before read")
            # rows up to a window past the first read: the session ends long before that
            until = now_epoch + max(self.history.aggregates.user_windows_days) * 86_400.0
            table = prior()
            rows = user_rows(table, self.history, until)
            self.history_builds += table.num_rows > 0
            self._users[session_id] = rows
        row = rows.at(now_epoch, self.history.user_ttl_s)
        if row is None:
            values.update(dict.fromkeys(USER_DERIVED_FIELDS))
            return values, False, True
        values.update(row)
        first_seen = row.get(USER_FIRST_SEEN)
        user = derive_user(now_epoch, math.nan if first_seen is None else float(first_seen))
        values.update({k: _clean(v) for k, v in user.items()})  # as the ODFV serves them
        return values, True, True


class StoreFedPolicy(EnginePolicy):
    """`EnginePolicy` over an engine whose reader is a `SimulatedStore`."""

    def __init__(self, engine: DecisionEngine, store: SimulatedStore) -> None:
        super().__init__(engine)
        self.store = store

    def decide(self, ctx: MomentContext) -> Intervention:
        self.store.remember(ctx)
        return super().decide(ctx)


def _clean(value: Any) -> Value:
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
