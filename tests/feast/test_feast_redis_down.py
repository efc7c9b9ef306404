"""A dead Redis online store is `feature_store_error`, and /readyz sees it.

Issue 11: with Redis as the feature store, a dead Redis was reported as
`feature_budget_exceeded` (the client's retries outlast the read budget), never
`feature_store_error`, and /readyz said nothing. Own redis-server on a random port.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from feast_tables import DECISION_S, at, epoch

from features.store.config import OnlineBackend
from features.store.online import OnlineFeatures
from features.store.repo import apply, materialize, open_store
from serving.decision import FallbackReason
from serving.feature_read import BudgetedReader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from fault_servers import RedisServer

BUDGET_MS = 250.0  # generous (served: 25 ms): a loaded machine must not fake an overrun
SETTLE_LIMIT_S = 60.0  # the client's retries against a dead server finish within this


@pytest.fixture
def own_redis():
    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


def test_dead_redis_feature_store_is_a_store_error_and_fails_the_probe(
    layout, world, feast_cfg, own_redis
) -> None:
    cfg = feast_cfg.override(
        project="downtest",
        backend=OnlineBackend.REDIS,
        redis_connection_string=f"127.0.0.1:{own_redis.port},db=0",
    )
    apply(layout, cfg)
    materialize(layout, cfg, end=at(600))
    online = OnlineFeatures.from_package(open_store(layout, cfg), layout, cfg.feature_service)
    reader = BudgetedReader(online, BUDGET_MS, 2)
    decision = ("u_known", "s1", "welcome", epoch(DECISION_S))
    try:
        online.check()
        online.read(*decision)  # warm: the first read opens the connection
        ok = _read(reader, decision)
        assert ok.error is None and ok.user_known
        own_redis.stop()
        with pytest.raises(Exception, match=r"(?i)connect"):
            online.check()
        deadline = time.monotonic() + SETTLE_LIMIT_S
        seen = []
        while time.monotonic() < deadline:
            seen.append(_read(reader, decision).error)
            if seen[-1] == FallbackReason.FEATURE_STORE_ERROR:
                break
            time.sleep(0.05)
        assert seen[-1] == FallbackReason.FEATURE_STORE_ERROR, seen
        # from now on a dead store is reported as such, read after read
        later = [_read(reader, decision) for _ in range(5)]
        assert {r.error for r in later} == {FallbackReason.FEATURE_STORE_ERROR}
        assert max(r.elapsed_ms for r in later) < 4 * BUDGET_MS
    finally:
        reader.close()


def _read(reader, decision):
    return asyncio.run(reader.read_async(*decision))
