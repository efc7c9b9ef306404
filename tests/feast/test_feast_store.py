"""Feast on SQLite: apply, materialize, online reads, point-in-time training frames, pushes."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from feast import ValueType
from feast_tables import DECISION_S, at, epoch

from core.settings import load_config
from features.pipeline.aggregates import user_feature_names
from features.pipeline.config import AggregatesConfig
from features.signals import (
    DERIVED_FIELDS,
    SNAPSHOT_CLOCKS,
    SNAPSHOT_COUNTERS,
    USER_DERIVED_FIELDS,
    derive,
    new_state,
    snapshot,
)
from features.store.online import OnlineFeatures, ReadPath
from features.store.repo import apply, historical_frame, materialize, open_store


def test_apply_registers_entities_views_and_the_model_contract(sqlite_store) -> None:
    layout, cfg, _, store = sqlite_store
    entities = {e.name: e for e in store.list_entities()}
    assert {name: (e.join_key, e.value_type) for name, e in entities.items()} == {
        "user": ("user_id", ValueType.STRING),
        "session": ("session_id", ValueType.STRING),
        "step": ("step", ValueType.STRING),
    }
    assert {v.name for v in store.list_feature_views()} == {
        "user_stats",
        "step_stats",
        "session_state",
    }
    ttls = {v.name: v.ttl for v in store.list_feature_views()}
    assert ttls["user_stats"] == cfg.ttl.user_stats
    assert ttls["session_state"] == cfg.ttl.session_state
    assert store.get_feature_view("session_state").stream_source.name == "session_state_push"

    service = store.get_feature_service(cfg.feature_service)
    served = [f.name for p in service.feature_view_projections for f in p.features]
    users = [
        n
        for n in user_feature_names(load_config(AggregatesConfig, layout=layout))
        if not n.endswith("_at")
    ]
    steps = ["step_sessions", "step_dropoff_rate", "step_typical_time_on_step_s"]
    steps += ["step_typical_pause_s", "step_stats_fallback"]
    assert served == [*users, *steps, *SNAPSHOT_COUNTERS, *DERIVED_FIELDS, *USER_DERIVED_FIELDS]
    assert not set(served) & set(SNAPSHOT_CLOCKS)  # clocks are inputs, never features
    assert "user_first_seen_at" not in served


def test_apply_is_idempotent(sqlite_store) -> None:
    layout, cfg, _, store = sqlite_store
    before = {v.name: v.schema for v in store.list_feature_views()}
    apply(layout, cfg)
    after = {v.name: v.schema for v in open_store(layout, cfg).list_feature_views()}
    assert before == after


def test_online_read_known_user_after_first_materialization(sqlite_store) -> None:
    """The data is months old: Feast's own first incremental run (now - ttl) would skip it."""
    _, cfg, world, store = sqlite_store
    vector = OnlineFeatures(store, cfg.feature_service).read(
        "u_known", "s1", "welcome", epoch(DECISION_S)
    )
    assert vector.user_known and vector.session_known
    values = vector.values
    # materialized up to +600 s: the user row planted at +1 h is not loaded yet
    assert values["user_sessions_30d"] == 2
    assert values["user_device"] == "mobile"
    assert values["step_typical_pause_s"] == 5.0
    # the online store holds the latest session row, the planted CTA failure included
    latest = world.snapshots["s1@planted"]
    assert values["cta_fails"] == latest["cta_fails"] == 2.0
    now = epoch(DECISION_S)
    expected = derive(latest, now, world.signals, 5.0)
    for name in DERIVED_FIELDS:
        assert _same(values[name], expected[name]), name
    # first seen 3 days before T0, from the stored clock at the decision time
    assert values["user_days_since_first_seen"] == pytest.approx(3 + DECISION_S / 86_400)
    assert "user_first_seen_at" not in values  # the clock is an input, never served


def test_cold_start_and_unknown_session_are_reported_not_zeroed(sqlite_store) -> None:
    _, cfg, _, store = sqlite_store
    online = OnlineFeatures(store, cfg.feature_service)
    vector = online.read("u_new", "s_unknown", "welcome", epoch(40))
    assert not vector.user_known
    assert not vector.session_known
    assert all(vector.values[n] is None for n in DERIVED_FIELDS)
    assert vector.values["user_sessions_30d"] is None
    assert vector.values["user_days_since_first_seen"] is None
    assert vector.values["cta_fails"] is None
    assert vector.values["step_typical_pause_s"] == 5.0  # the step itself is known


def test_rows_past_their_ttl_read_as_missing_online_as_in_training(sqlite_store) -> None:
    _, cfg, world, store = sqlite_store
    online = OnlineFeatures(store, cfg.feature_service)
    stale = online.read("u_stale", "s2", "profile", epoch(30))
    assert not stale.user_known  # its only row is 40 days old, the TTL 30 days
    assert stale.values["user_sessions_30d"] is None
    frame = historical_frame(store, world.decision_points, online.service)
    assert math.isnan(frame.set_index("decision_key").loc["d2", "user_sessions_30d"])
    # the session is younger than its TTL a day later, but not two days later
    assert online.read("u_stale", "s2", "profile", epoch(86_000)).session_known
    assert not online.read("u_stale", "s2", "profile", epoch(2 * 86_400)).session_known


def test_historical_frame_is_point_in_time_and_never_sees_planted_rows(sqlite_store) -> None:
    """Rows planted after the decision time (a CTA failure event replayed into the session
    state, a user row and a step row an hour later) never reach the decision's row."""
    _, cfg, world, store = sqlite_store
    service = store.get_feature_service(cfg.feature_service)
    frame = historical_frame(store, world.decision_points, service)

    assert list(frame["decision_key"]) == ["d1", "d2", "d3"]  # input order kept
    assert list(frame.columns[: len(world.decision_points.columns)]) == list(
        world.decision_points.columns
    )
    pd.testing.assert_series_equal(frame["label"], world.decision_points["label"])
    assert frame["oracle_p"].iloc[0] == 0.7 and math.isnan(frame["oracle_p"].iloc[2])
    served = [f.name for p in service.feature_view_projections for f in p.features]
    extra = set(frame.columns) - set(world.decision_points.columns) - set(served)
    assert not extra, f"columns that are neither input nor served feature: {extra}"

    d1 = frame.iloc[0]
    at_decision = world.snapshots["s1@decision"]
    assert d1["cta_fails"] == at_decision["cta_fails"] == 1.0  # not the planted 2
    assert d1["user_sessions_30d"] == 2  # not the planted 99
    assert d1["step_typical_pause_s"] == 5.0  # not the planted 999
    expected = derive(at_decision, epoch(DECISION_S), world.signals, 5.0)
    for name in DERIVED_FIELDS:
        assert _same(d1[name], expected[name]), name
    assert d1["pause_s"] == DECISION_S - 8.0  # since the last interaction at +8 s

    d3 = frame.iloc[2]  # unknown session and user: missing, never zero
    assert all(math.isnan(d3[name]) for name in DERIVED_FIELDS)
    assert math.isnan(d3["cta_fails"]) and math.isnan(d3["user_sessions_30d"])


def test_historical_frame_rejects_bad_decision_points(sqlite_store) -> None:
    _, cfg, world, store = sqlite_store
    service = store.get_feature_service(cfg.feature_service)
    with pytest.raises(ValueError, match="missing columns: request_ts"):
        historical_frame(store, world.decision_points.drop(columns="request_ts"), service)
    broken = world.decision_points.assign(session_id=[None, "s2", "s3"])
    with pytest.raises(ValueError, match=r"null values in session_id \(1 rows\)"):
        historical_frame(store, broken, service)
    naive = world.decision_points.assign(
        event_timestamp=world.decision_points["event_timestamp"].dt.tz_localize(None)
    )
    with pytest.raises(ValueError, match="UTC timestamp"):
        historical_frame(store, naive, service)


@pytest.mark.parametrize("via_push_source", [False, True])
def test_push_then_read_returns_the_pushed_state(layout, feast_cfg, world, via_push_source):
    """Both writers (online-store writer, FeatureStore.push) land rows every path reads."""
    apply(layout, feast_cfg)
    materialize(layout, feast_cfg, end=at(600))
    store = open_store(layout, feast_cfg)
    online = OnlineFeatures(store, feast_cfg.feature_service)
    assert online.path is ReadPath.ONLINE_STORE  # the SQLite default
    pushed = dict(world.snapshots["s1@planted"], cta_fails=7.0, last_interaction_at=epoch(50))
    online.push_session("s1", pushed, at(50), via_push_source=via_push_source)
    for reader in [OnlineFeatures(store, feast_cfg.feature_service, p) for p in ReadPath]:
        vector = reader.read("u_known", "s1", "welcome", epoch(62))
        assert vector.values["cta_fails"] == 7.0, reader.path
        assert vector.values["pause_s"] == 12.0  # from the pushed clock
    fresh = snapshot(new_state("s_new"))  # NaN clocks: no interaction yet
    online.push_session("s_new", fresh, at(55), via_push_source=via_push_source)
    vector = online.read("u_new", "s_new", "welcome", epoch(60))
    assert vector.session_known and vector.values["pause_s"] is None
    assert vector.values["events"] == 0.0

    with pytest.raises(ValueError, match=r"missing fields.*'events'"):
        online.push_session("s1", {k: v for k, v in pushed.items() if k != "events"}, at(70))
    with pytest.raises(ValueError, match=r"unknown fields.*'typo'"):
        online.push_session("s1", dict(pushed, typo=1.0), at(70))
    with pytest.raises(ValueError, match="timezone-aware"):
        online.push_session("s1", pushed, at(70).replace(tzinfo=None))


def test_materialize_is_incremental_after_the_first_run(layout, feast_cfg, world) -> None:
    apply(layout, feast_cfg)
    first = materialize(layout, feast_cfg, end=at(600))
    assert all(r.first_run for r in first)
    online = OnlineFeatures(open_store(layout, feast_cfg), feast_cfg.feature_service)
    assert online.read("u_known", "s1", "welcome", epoch(7200)).values["user_sessions_30d"] == 2
    second = materialize(layout, feast_cfg, end=at(7200))
    assert [r.start for r in second] == [at(600)] * 3
    assert not any(r.first_run for r in second)
    vector = online.read("u_known", "s1", "welcome", epoch(7200))
    assert vector.values["user_sessions_30d"] == 99  # the row of +1 h is now loaded
    assert vector.values["step_typical_pause_s"] == 999.0


def test_materialize_before_apply_says_what_to_do(layout, feast_cfg, world) -> None:
    from features.store.definitions import FeatureTableError

    with pytest.raises(FeatureTableError, match="intent features apply"):
        materialize(layout, feast_cfg)


def _same(a: float | None, b: float) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return math.isnan(b)
    return a == pytest.approx(b)


def test_canary_feast_file_store_still_drops_rows_historical_frame_keeps(sqlite_store) -> None:
    """Why `historical_frame` joins view by view: plain Feast loses a decision point whose
    key has rows in a view but none valid at its time - here the user whose only row is
    past the TTL; on simulated data every first-session user, whose rows all come later
    (81% of the rows). When this fails, Feast has fixed it and the workaround can go."""
    _, cfg, world, store = sqlite_store
    service = store.get_feature_service(cfg.feature_service)
    plain = store.get_historical_features(entity_df=world.decision_points, features=service)
    assert sorted(plain.to_df()["decision_key"]) == ["d1", "d3"]  # d2 is gone
    assert len(historical_frame(store, world.decision_points, service)) == 3


def test_decisions_sharing_keys_and_time_each_keep_their_row(sqlite_store) -> None:
    """Two moments detected on one event share session, step and time (feast-dev/feast#6787
    collapses such entity rows in the file store)."""
    _, cfg, world, store = sqlite_store
    points = world.decision_points
    twin = points.iloc[[0]].assign(decision_key="d1b", moment="cta_fail", label=0)
    both = pd.concat([points, twin], ignore_index=True)
    frame = historical_frame(store, both, store.get_feature_service(cfg.feature_service))
    assert list(frame["decision_key"]) == ["d1", "d2", "d3", "d1b"]
    assert list(frame["label"]) == [1, 0, 0, 0]
    first, twin_row = frame.iloc[0], frame.iloc[3]
    assert twin_row["cta_fails"] == first["cta_fails"] and twin_row["pause_s"] == first["pause_s"]


def test_one_statement_sqlite_read_equals_feasts_own_per_view_reads(
    layout, feast_cfg, world
) -> None:
    """`SqliteTables` reads Feast's tables itself: same values, presence and TTLs as Feast."""
    apply(layout, feast_cfg)
    materialize(layout, feast_cfg, end=at(600))
    store = open_store(layout, feast_cfg)
    direct = OnlineFeatures(store, feast_cfg.feature_service, lock_timeout_s=0.05)
    feast = OnlineFeatures(store, feast_cfg.feature_service, sqlite_direct=False)
    assert direct.tables is not None and feast.tables is None
    assert direct.tables.journal_mode == "wal"  # writers no longer block the server's reads
    pushed = dict(world.snapshots["s1@planted"], cta_fails=3.0, last_interaction_at=epoch(45))
    direct.push_session("s_live", pushed, at(45))
    cases = [
        ("u_known", "s1", "welcome", epoch(DECISION_S)),
        ("u_new", "s_unknown", "welcome", epoch(40)),
        ("u_stale", "s2", "profile", epoch(30)),
        ("u_stale", "s2", "profile", epoch(2 * 86_400)),  # session past its TTL
        ("u_known", "s_live", "no_such_step", epoch(50)),
    ]
    for case in cases:
        a, b = direct.read(*case), feast.read(*case)
        assert (a.user_known, a.session_known) == (b.user_known, b.session_known), case
        assert a.values.keys() == b.values.keys()
        assert a.values == b.values, case  # NaN reads as None on both paths
    direct.close()
