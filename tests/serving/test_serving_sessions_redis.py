"""The Redis session store: concurrent writers lose no event, TTL retention, the late horizon
shared by every instance, and a down or hung Redis is an error within the socket timeout."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from fault_engine import decide_all, fault_engine, shown_users, trigger_request
from fault_limits import ANSWER_LIMIT_S, LOOP_STALL_LIMIT_S
from fault_servers import RedisServer
from serving_helpers import QUIET, REPO_CONFIGS, merge, start_bare, tmp_layout

from core.settings import load_config
from core.vocabulary import ActionType
from features.config import SignalsConfig
from features.ingest.sessionize import session_key
from serving.caps import MemoryCapStore
from serving.sessions import LiveEvent, SessionStoreUnavailable
from serving.sessions_redis import RedisSessionStore

GAP_S = 1800.0
HOT_TS = 1000.0  # every racing event at one instant: none is late, so each must be folded
WRITERS = 3
BATCHES = 30  # per writer; each batch: one event in session s-hot, one in a derived session


def ev(event_id, ts, type_="click", session="s1", user="u1", target="faq"):
    return LiveEvent(event_id, session, user, None, ts, type_, "welcome", target, None)


def write_hot(url: str, prefix: str, writer: int, start, results) -> None:
    """One writer (thread or process): BATCHES batches into the two shared sessions."""
    cfg = load_config(SignalsConfig, REPO_CONFIGS / "signals.yaml")
    store = RedisSessionStore(url, prefix, cfg, GAP_S, 48 * 3600.0, conflict_retries=1000)
    start.wait(timeout=60)
    accepted, refused = [], []
    for b in range(BATCHES):
        batch = [
            ev(f"w{writer}-b{b}-x", HOT_TS, session="s-hot", user="u-hot"),
            ev(f"w{writer}-b{b}-d", HOT_TS, session=None, user="u-derived"),
        ]
        result = store.apply(batch)
        accepted += result.accepted
        refused += [*result.duplicates, *(e.event_id for e in result.late)]
    store.close()
    results.put((accepted, refused))


@pytest.mark.redis
@pytest.mark.parametrize("how", ["threads", "processes"])
def test_concurrent_writers_to_one_session_lose_no_event(redis_url, redis_prefix, how) -> None:
    """Every writer folds into the same two sessions at once; a lost update (two writers
    folding from the same stored state) would leave the session's event count short."""
    if how == "threads":
        import queue

        start, results = threading.Barrier(WRITERS), queue.Queue()
        workers = [
            threading.Thread(target=write_hot, args=(redis_url, redis_prefix, w, start, results))
            for w in range(WRITERS)
        ]
    else:
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Barrier(WRITERS), ctx.Queue()
        workers = [
            ctx.Process(target=write_hot, args=(redis_url, redis_prefix, w, start, results))
            for w in range(WRITERS)
        ]
    for w in workers:
        w.start()
    answers = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    accepted = [i for acc, _ in answers for i in acc]
    assert [r for _, r in answers] == [[]] * WRITERS  # nothing late or duplicate
    total = WRITERS * BATCHES
    assert len(accepted) == len(set(accepted)) == 2 * total
    cfg = load_config(SignalsConfig, REPO_CONFIGS / "signals.yaml")
    store = RedisSessionStore(redis_url, redis_prefix, cfg, GAP_S, 48 * 3600.0)
    assert store.get("s-hot").events == total
    assert store.get(session_key("u-derived", round(HOT_TS * 1_000_000))).events == total
    store.close()


@pytest.mark.redis
def test_keys_expire_after_the_retention(redis_url, redis_prefix, signals_cfg) -> None:
    import redis

    retention = 10 * GAP_S
    store = RedisSessionStore(redis_url, redis_prefix, signals_cfg, GAP_S, retention)
    store.apply([ev("e1", 100.0), ev("d1", 100.0, session=None, user="u9")])
    client = redis.Redis.from_url(redis_url)
    for key in (store.key("seen", "e1"), store.key("session", "s1"), store.key("actor", "u9")):
        ttl = client.ttl(key)
        assert 0 < ttl <= retention, (key, ttl)
    client.close()
    store.close()


@pytest.mark.redis
def test_the_late_horizon_is_on_event_time_and_shared(redis_url, redis_prefix, signals_cfg) -> None:
    """One replica sees an event far ahead; another then quarantines an event older than the
    retention as late (its id may have expired), never folds it."""
    retention = 10 * GAP_S
    a = RedisSessionStore(redis_url, redis_prefix, signals_cfg, GAP_S, retention)
    b = RedisSessionStore(redis_url, redis_prefix, signals_cfg, GAP_S, retention)
    assert a.apply([ev("e1", 100.0), ev("e2", 101.0)]).accepted == ["e1", "e2"]
    later = 101.0 + retention + 1
    assert b.apply([ev("n1", later, session="s2", user="u2")]).accepted == ["n1"]
    replayed = a.apply([ev("e3", 101.5), ev("n2", later + 1, session="s2", user="u2")])
    assert [e.event_id for e in replayed.late] == ["e3"] and replayed.accepted == ["n2"]
    assert a.get("s1").events == 2 and b.get("s2").events == 2
    a.close()
    b.close()


def test_retention_must_outlast_a_session_gap(signals_cfg) -> None:
    with pytest.raises(ValueError, match="must exceed the inactivity gap"):
        RedisSessionStore("redis://127.0.0.1:1/0", "p:", signals_cfg, GAP_S, GAP_S / 2)


@pytest.fixture
def own_redis():
    server = RedisServer()
    yield server
    server.stop()


@pytest.mark.parametrize("fault", ["down", "hung"])
def test_a_down_or_hung_redis_is_an_error_not_a_hang(own_redis, signals_cfg, fault) -> None:
    store = RedisSessionStore(
        own_redis.url, "t:", signals_cfg, GAP_S, 48 * 3600.0, socket_timeout_s=0.5
    )
    assert store.apply([ev("e1", 100.0)]).accepted == ["e1"]
    if fault == "down":
        own_redis.stop()
    else:
        own_redis.pause()
    for call in (lambda: store.apply([ev("e2", 101.0)]), lambda: store.get("s1")):
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable, match="Redis session store"):
            call()
        assert time.monotonic() - started < ANSWER_LIMIT_S
    own_redis.resume()
    store.close()


def test_events_answer_503_when_the_session_store_is_down(
    own_redis, monkeypatch, tmp_path: Path
) -> None:
    """POST /events with Redis gone: 503 with Retry-After (the client retries; dedup by event
    id makes the retry safe), never a 500 or a hang."""
    sessions = {"kind": "redis", "url": own_redis.url, "prefix": "t:", "retention_hours": 48}
    layout = tmp_layout(tmp_path, merge(QUIET, {"serving.yaml": {"backends.sessions": sessions}}))
    event = {
        "event_id": "e-503",
        "user_id": "u-ev",
        "session_id": "s-ev",
        "ts": "2025-03-03T12:00:00Z",
        "type": "view",
        "step": "welcome",
    }
    with start_bare(monkeypatch, layout) as client:
        assert client.post("/events", json={"events": [event]}).json()["accepted"] == 1
        own_redis.stop()
        started = time.monotonic()
        r = client.post("/events", json={"events": [{**event, "event_id": "e-503b"}]})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        assert "session store" in r.json()["error"]
        assert time.monotonic() - started < ANSWER_LIMIT_S


def test_decisions_go_on_without_a_hung_session_store(own_redis, policy_cfg, signals_cfg) -> None:
    """The engine reads the session within `budgets.lookup_ms`: a hung Redis costs the
    session's assistive flag, never the decision or the event loop."""
    sessions = RedisSessionStore(own_redis.url, "t:", signals_cfg, GAP_S, socket_timeout_s=5)
    engine = fault_engine(
        policy_cfg, signals_cfg, caps=MemoryCapStore(policy_cfg.caps), sessions=sessions,
        lookup_ms=200,
    )  # fmt: skip
    users = shown_users(policy_cfg, 4)
    own_redis.pause()
    try:
        decisions, seconds, stall = decide_all(engine, [trigger_request(u) for u in users])
        assert [d.action for d in decisions] == [ActionType.CONTEXTUAL_TIP] * len(users)
        assert max(seconds) < ANSWER_LIMIT_S
        assert stall < LOOP_STALL_LIMIT_S, f"event loop stalled {stall:.3f} s"
    finally:
        own_redis.resume()
        engine.close()
