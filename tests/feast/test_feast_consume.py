"""`intent consume` pushes live session state to Feast the way POST /events does."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from feast_tables import at

from core.settings import load_config
from features.store.online import OnlineFeatures
from features.store.repo import apply, materialize, open_store
from streaming.config import StreamConfig
from streaming.jobs import consume
from streaming.producer import produce

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_consumed_events_are_pushed_to_the_online_store(layout, feast_cfg, world, redis_url):
    apply(layout, feast_cfg)
    materialize(layout, feast_cfg, end=at(600))
    tag = uuid.uuid4().hex[:10]
    cfg = load_config(StreamConfig, layout=layout).model_copy(
        update={
            "redis_url": redis_url,
            "stream": f"test:stream:{tag}",
            "group": f"g-{tag}",
            "block_ms": 100,
            "metrics_port": None,
        }
    )
    now = datetime.now(UTC)
    events = [
        {
            "event_id": f"{tag}-{i}",
            "user_id": "u_known",
            "session_id": "s_stream",
            "ts": (now - timedelta(seconds=30 - i)).isoformat(),
            "type": kind,
            "step": "welcome",
        }
        for i, kind in enumerate(["view", "cta_fail", "cta_fail"])
    ]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        produce(client, cfg.stream, [json.dumps(e) for e in events])
        stats = consume(layout, cfg, "c1", threading.Event(), max_entries=3, push=True)
    finally:
        client.delete(cfg.stream)
        client.close()

    assert stats.results == {"accepted": 3}
    online = OnlineFeatures(open_store(layout, feast_cfg), feast_cfg.feature_service)
    vector = online.read("u_known", "s_stream", "welcome", time.time())
    assert vector.session_known
    assert vector.values["events"] == 3.0 and vector.values["cta_fails"] == 2.0
