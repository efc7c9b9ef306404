"""Real Redis streams with unique names (deleted afterwards) in a temporary layout."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from stream_helpers import Bus

from core.layout import Layout
from core.settings import load_config
from streaming.config import StreamConfig


@pytest.fixture
def bus(redis_url: str, layout: Layout) -> Iterator[Bus]:
    """configs/stream.yaml on a fresh stream and group; short waits so tests are quick."""
    tag = uuid.uuid4().hex[:10]
    cfg = load_config(StreamConfig, layout=layout).model_copy(
        update={
            "redis_url": redis_url,
            "stream": f"test:stream:{tag}",
            "group": f"g-{tag}",
            "block_ms": 100,
            "claim_idle_ms": 300,
            "claim_every_s": 0.1,
            "metrics_port": None,
            "retry_backoff_s": 0.1,
        }
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield Bus(client, cfg)
    finally:
        client.delete(cfg.stream)
        client.close()
