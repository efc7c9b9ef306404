"""A decision answered 503 gives its cap slot back, and is not kept in the log.

Issue 11: a decision answered 503 (decision log unavailable) still consumed a cap slot, and
a /score that timed out had its decision written afterwards.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import decision_row

from core.policy_config import CapsConfig
from core.vocabulary import ActionType
from serving.caps import CapRequest, MemoryCapStore, RedisCapStore, SqliteCapStore
from serving.decision_log import DecisionLog, DecisionLogError, MemoryBackend

DAY0 = 1_741_000_000.0
CAPS = CapsConfig(
    max_per_day=2,
    max_per_episode=1,
    cooldown_s=60,
    default_tz="UTC",
    actions={ActionType.LIVE_CHAT: {"bypass": ["episode", "cooldown"]}},
)

requests = st.builds(
    lambda user, episode, action, minute: CapRequest(
        user, "s", episode, action, DAY0 + minute * 60.0, "UTC"
    ),
    st.sampled_from(["u1", "u2"]),
    st.sampled_from(["e1", "e2", "e3"]),
    st.sampled_from([ActionType.GUIDE, ActionType.LIVE_CHAT]),
    st.integers(0, 30),
)


@pytest.fixture(scope="module")
def redis_url():
    from fault_servers import RedisServer

    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield server.url
    server.stop()


def _stores(kind: str, redis_url: str | None):
    """Two fresh stores of `kind`: one replays history + acquire + release, one history only."""
    if kind == "memory":
        return MemoryCapStore(CAPS), MemoryCapStore(CAPS)
    if kind == "sqlite":
        root = Path(tempfile.mkdtemp(prefix="caps-release-"))
        return SqliteCapStore(root / "a.db", CAPS), SqliteCapStore(root / "b.db", CAPS)
    prefix = uuid.uuid4().hex[:8]
    return (
        RedisCapStore(redis_url, f"{prefix}a:", CAPS),
        RedisCapStore(redis_url, f"{prefix}b:", CAPS),
    )


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_release_undoes_an_acquire_exactly(kind, request) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else None

    @settings(
        max_examples=60 if kind == "memory" else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(history=st.lists(requests, max_size=8), extra=requests, probes=st.lists(requests))
    def check(history, extra, probes) -> None:
        undone, plain = _stores(kind, url)
        try:
            for req in history:
                undone.acquire(req)
                plain.acquire(req)
            verdict = undone.acquire(extra)
            undone.release(extra, verdict)
            # from here on both stores must answer every request alike
            for probe in probes[:4]:
                assert undone.acquire(probe).allowed == plain.acquire(probe).allowed
        finally:
            undone.close()
            plain.close()

    check()


class SlowBackend(MemoryBackend):
    """A real in-memory log whose commits take `delay_s` (a backend slowing down)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.started = threading.Event()

    def write(self, decisions, outcomes) -> None:
        self.started.set()
        time.sleep(self.delay_s)
        super().write(decisions, outcomes)


BUDGET_S = 0.05
SLOW_S = 0.5  # ten budgets: the caller has long given up when the commit lands
WRITER_LIMIT_S = 30.0


def test_a_decision_whose_caller_gave_up_is_not_kept_in_flight_or_queued() -> None:
    backend = SlowBackend(SLOW_S)
    log = DecisionLog(backend, batch_max=1)

    async def main() -> list:
        calls = [log.append_decision_async(decision_row(f"d{i}"), BUDGET_S) for i in range(3)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, DecisionLogError) for r in results), results
    assert "not kept" in str(results[0])
    deadline = time.monotonic() + WRITER_LIMIT_S
    while log._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(SLOW_S * 2)  # the in-flight commit lands, then is deleted again
    log.close()
    # d0 was committed after its caller gave up (deleted again); d1, d2 were never written
    assert list(log.decisions()["decision_id"]) == []


def test_a_decision_committed_within_budget_is_kept() -> None:
    log = DecisionLog(SlowBackend(0.0), batch_max=4)
    asyncio.run(log.append_decision_async(decision_row("fast"), 5.0))
    log.close()
    assert list(log.decisions()["decision_id"]) == ["fast"]
