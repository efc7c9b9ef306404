"""A hung or locked cap store costs a suppressed trigger within budget, never a frozen loop.

Issue 11: the Redis cap check (1 s socket timeout) and the SQLite one (10 s busy timeout)
ran on the event loop; with Redis hung 20 s the worker served 1.8 req/s and /livez took 4 s.
Here the stores are real: an own redis-server (SIGSTOP = hung), a caps.db locked by a
second process.
"""

from __future__ import annotations

import time

import pytest
from fault_engine import fault_engine, shown_users, trigger_request
from fault_limits import ANSWER_LIMIT_S, HANG_S, LOOP_STALL_LIMIT_S, RECOVERY_LIMIT_S
from fault_servers import RedisServer, locked_sqlite, wait_for

from core.vocabulary import ActionType
from serving.caps import CapRequest, RedisCapStore, SqliteCapStore
from serving.engine import CAP_STORE_ERROR


@pytest.fixture
def redis_server():
    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


def _day_count(store: RedisCapStore, user: str) -> int:
    req = trigger_request(user)
    day_key = store.keys(CapRequest(user, req.session_id, "e", ActionType.GUIDE, req.now, "UTC"))[0]
    return int(store._redis.get(day_key) or 0)


def test_hung_redis_suppresses_within_budget_and_late_slots_are_released(
    policy_cfg, signals_cfg, redis_server
) -> None:
    caps = RedisCapStore(redis_server.url, "t:", policy_cfg.caps, socket_timeout_s=HANG_S)
    engine = fault_engine(policy_cfg, signals_cfg, caps=caps, caps_ms=200)
    first, *users = shown_users(policy_cfg, 13)
    try:
        [ok], _, _ = _decide(engine, [first])
        assert ok.action == ActionType.CONTEXTUAL_TIP and not ok.capped
        redis_server.pause()
        decisions, seconds, stall = _decide(engine, users)
        assert [d.cap_reason for d in decisions] == [CAP_STORE_ERROR] * len(users)
        assert all(d.action == ActionType.NONE for d in decisions)  # fail closed
        assert max(seconds) < ANSWER_LIMIT_S < HANG_S
        assert stall < LOOP_STALL_LIMIT_S, f"event loop stalled {stall:.3f} s"
        print(
            f"measured: Redis hung, {len(users)} decisions in <= {max(seconds):.3f} s, "
            f"worst loop stall {stall * 1000:.1f} ms"
        )
        redis_server.resume()
        # the calls that were running when the budget ran out complete now: their slots go back
        wait_for(
            lambda: all(_day_count(caps, u) == 0 for u in users),
            RECOVERY_LIMIT_S,
            "released cap slots",
        )
        [again], _, _ = _decide(engine, users[:1])
        assert again.action == ActionType.CONTEXTUAL_TIP and not again.capped
    finally:
        redis_server.resume()
        engine.close()


def test_locked_sqlite_caps_suppress_within_budget(policy_cfg, signals_cfg, tmp_path) -> None:
    path = tmp_path / "caps.db"
    caps = SqliteCapStore(path, policy_cfg.caps, lock_timeout_s=HANG_S)
    engine = fault_engine(policy_cfg, signals_cfg, caps=caps, caps_ms=200)
    users = shown_users(policy_cfg, 6)
    try:
        with locked_sqlite(path, "write"):
            decisions, seconds, stall = _decide(engine, users)
            assert [d.cap_reason for d in decisions] == [CAP_STORE_ERROR] * len(users)
            assert max(seconds) < ANSWER_LIMIT_S < HANG_S
            assert stall < LOOP_STALL_LIMIT_S, f"event loop stalled {stall:.3f} s"
            print(
                f"measured: caps.db locked, {len(users)} decisions in <= {max(seconds):.3f} s, "
                f"worst loop stall {stall * 1000:.1f} ms"
            )
        # the lock is gone: the stuck acquires finish, find their requests gone, release
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        while time.monotonic() < deadline:
            [d], _, _ = _decide(engine, users[:1])
            if not d.capped:
                break
            time.sleep(0.2)
        assert d.action == ActionType.CONTEXTUAL_TIP and not d.capped
    finally:
        engine.close()


def _decide(engine, users):
    from fault_engine import decide_all

    return decide_all(engine, [trigger_request(u) for u in users])
