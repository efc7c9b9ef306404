"""Frequency caps: per local day, per episode, cooldown, action bypass; atomic on every backend."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from serving_helpers import RACE_NOW, open_cap_store, race_worker

from core.policy_config import CapKind, CapsConfig
from core.vocabulary import ActionType
from serving.caps import (
    CapRequest,
    CapState,
    MemoryCapStore,
    RedisCapStore,
    SqliteCapStore,
    judge,
    local_day,
)

CFG = CapsConfig(
    max_per_day=2,
    max_per_episode=1,
    cooldown_s=120,
    default_tz="UTC",
    actions={ActionType.LIVE_CHAT: {"bypass": ["episode", "cooldown"]}},
)


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.fixture(params=["memory", "sqlite", "sqlite-checkpointer", "redis"])
def store(request, tmp_path: Path):
    if request.param == "memory":
        s = MemoryCapStore(CFG)
    elif request.param == "sqlite":
        s = SqliteCapStore(tmp_path / "caps.db", CFG)
    elif request.param == "sqlite-checkpointer":
        s = SqliteCapStore(tmp_path / "caps.db", CFG, checkpoint_interval_s=0.01)
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisCapStore(url, f"test:{uuid.uuid4().hex[:8]}:", CFG)
    yield s
    if isinstance(s, RedisCapStore):
        for key in s._redis.scan_iter(match=f"{s.prefix}*"):
            s._redis.delete(key)
    s.close()


def ask(store, now: float, episode: str, action=ActionType.GUIDE, tz="Europe/Paris", user="u"):
    return store.acquire(CapRequest(user, "s1", episode, action, now, tz))


def test_two_per_local_day_in_the_users_time_zone(store) -> None:
    # Paris is UTC+1 in early March: 21:00 and 22:00 UTC are 22:00 and 23:00 local (3 March).
    assert ask(store, utc(2025, 3, 3, 21, 0), "e1").allowed
    assert ask(store, utc(2025, 3, 3, 22, 0), "e2").allowed
    third = ask(store, utc(2025, 3, 3, 22, 30), "e3")
    assert not third.allowed and third.reason == CapKind.DAILY
    # 23:05 UTC is still 3 March in UTC, but 00:05 on 4 March in Paris: a new day
    assert ask(store, utc(2025, 3, 3, 23, 5), "e4").allowed
    # another user is not affected
    assert ask(store, utc(2025, 3, 3, 22, 30), "e3", user="v").allowed


def test_one_per_episode_and_cooldown(store) -> None:
    t = utc(2025, 3, 3, 10, 0)
    assert ask(store, t, "pause@1").allowed
    same = ask(store, t + 300, "pause@1")
    assert not same.allowed and same.reason == CapKind.EPISODE
    soon = ask(store, t + 60, "pause@2")
    assert not soon.allowed and soon.reason == CapKind.COOLDOWN
    assert ask(store, t + 121, "pause@2").allowed


def test_live_chat_bypasses_episode_and_cooldown_but_counts(store) -> None:
    t = utc(2025, 3, 3, 10, 0)
    assert ask(store, t, "pause@1", ActionType.CONTEXTUAL_TIP).allowed
    # escalation 18 s later in the same pause episode
    assert ask(store, t + 18, "pause@1", ActionType.LIVE_CHAT).allowed
    # that was the second trigger of the day: the daily cap still holds for live chat
    late = ask(store, t + 3600, "pause@9", ActionType.LIVE_CHAT)
    assert not late.allowed and late.reason == CapKind.DAILY


def test_judge_order_and_local_day() -> None:
    req = CapRequest("u", "s", "e", ActionType.GUIDE, utc(2025, 1, 1, 12), "UTC")
    assert judge(CapState(5, 5, req.now), req, CFG).reason == CapKind.EPISODE
    assert judge(CapState(5, 0, req.now - 1), req, CFG).reason == CapKind.COOLDOWN
    assert judge(CapState(2, 0, None), req, CFG).reason == CapKind.DAILY
    assert judge(CapState(1, 0, req.now - 121), req, CFG).allowed
    assert local_day(utc(2025, 1, 1, 23, 30), "Asia/Tokyo") == "2025-01-02"
    assert local_day(utc(2025, 1, 1, 3, 0), "America/Los_Angeles") == "2024-12-31"


@pytest.fixture
def race_prefixes(request):
    """Redis key prefixes used by a race test, deleted afterwards."""
    used: list[tuple[str, str]] = []
    yield used
    import redis

    for url, prefix in used:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)


def _where(kind: str, tmp_path: Path, redis_url: str | None, used: list) -> str:
    if kind == "sqlite":
        return str(tmp_path / "race.db")
    prefix = f"race:{uuid.uuid4().hex[:8]}:"
    used.append((redis_url, prefix))
    return f"{redis_url}|{prefix}"


def _prefill(kind: str, where: str, rounds: int) -> None:
    """Use up the first of the two daily slots of every round's user."""
    from serving.caps import CapRequest as Req

    store = open_cap_store(kind, where)
    for r in range(rounds):
        assert store.acquire(Req(f"racer-{r}", "s", "first", ActionType.GUIDE, RACE_NOW, "UTC"))
    store.close()


def _check_one_winner(results: list[tuple[int, int, bool]], rounds: int, racers: int) -> None:
    assert len(results) == rounds * racers
    winners = Counter(r for r, _, allowed in results if allowed)
    assert all(winners[r] == 1 for r in range(rounds)), winners


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_threads_racing_for_the_last_slot(kind, tmp_path: Path, request, race_prefixes) -> None:
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    where = _where(kind, tmp_path, redis_url, race_prefixes)
    rounds, racers = 15, 6
    _prefill(kind, where, rounds)
    barrier = threading.Barrier(racers)
    results: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(target=race_worker, args=(kind, where, w, rounds, barrier, results))
        for w in range(racers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    _check_one_winner([results.get_nowait() for _ in range(results.qsize())], rounds, racers)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_racing_for_the_last_slot(kind, tmp_path: Path, request, race_prefixes):
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    where = _where(kind, tmp_path, redis_url, race_prefixes)
    rounds, racers = 10, 2
    _prefill(kind, where, rounds)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=race_worker, args=(kind, where, w, rounds, barrier, results))
        for w in range(racers)
    ]
    for p in procs:
        p.start()
    collected = [results.get(timeout=120) for _ in range(rounds * racers)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    _check_one_winner(collected, rounds, racers)
