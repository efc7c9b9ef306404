"""The production online store: the same contract on the local Redis."""

from __future__ import annotations

import pytest
from feast_tables import DECISION_S, at, epoch

from features.store.online import OnlineFeatures, ReadPath
from features.store.repo import apply, historical_frame, materialize, open_store, teardown

pytestmark = pytest.mark.redis


def test_redis_apply_materialize_read_push_and_teardown(
    layout, world, redis_cfg, redis_url
) -> None:
    import redis

    apply(layout, redis_cfg)
    ran = materialize(layout, redis_cfg, end=at(600))
    assert {r.view for r in ran} == {"user_stats", "step_stats", "session_state"}
    store = open_store(layout, redis_cfg)
    assert store.config.online_store.type == "redis"
    online = OnlineFeatures(store, redis_cfg.feature_service)
    assert online.path is ReadPath.GET_ONLINE_FEATURES  # one pipelined round trip

    known = online.read("u_known", "s1", "welcome", epoch(DECISION_S))
    assert known.user_known and known.session_known
    assert known.values["user_sessions_30d"] == 2
    assert known.values["cta_fails"] == world.snapshots["s1@planted"]["cta_fails"]
    cold = online.read("u_new", "s_unknown", "welcome", epoch(40))
    assert not cold.user_known and not cold.session_known
    for path in (ReadPath.ONLINE_STORE, ReadPath.FEAST_ODFV):
        other = OnlineFeatures(store, redis_cfg.feature_service, path)
        same = other.read("u_known", "s1", "welcome", epoch(DECISION_S))
        assert same.values == pytest.approx(known.values), path

    pushed = dict(world.snapshots["s1@planted"], cta_fails=9.0)
    online.push_session("s1", pushed, at(60))
    assert online.read("u_known", "s1", "welcome", epoch(61)).values["cta_fails"] == 9.0

    frame = historical_frame(store, world.decision_points, online.service)
    assert frame.loc[0, "cta_fails"] == world.snapshots["s1@decision"]["cta_fails"]

    client = redis.Redis.from_url(redis_url)
    project = redis_cfg.project.encode()
    assert any(True for _ in client.scan_iter(match=b"*" + project))
    assert client.ttl(next(client.scan_iter(match=b"*" + project))) > 0  # key TTL from config
    teardown(layout, redis_cfg)
    assert not any(True for _ in client.scan_iter(match=b"*" + project))


def test_sqlite_and_redis_registries_track_materialization_separately(
    layout, world, feast_cfg, redis_cfg
) -> None:
    """Materializing SQLite must not make Redis look up to date (it would stay empty)."""
    apply(layout, feast_cfg)
    materialize(layout, feast_cfg, end=at(600))
    apply(layout, redis_cfg)
    assert all(r.first_run for r in materialize(layout, redis_cfg, end=at(600)))
    online = OnlineFeatures(open_store(layout, redis_cfg), redis_cfg.feature_service)
    assert online.read("u_known", "s1", "welcome", epoch(DECISION_S)).user_known
    teardown(layout, redis_cfg)
