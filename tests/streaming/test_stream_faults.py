"""The consumer against its own Redis (random port) hung by SIGSTOP: it waits, resumes, and
every event is folded once. Never the shared Redis."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import redis
from stream_helpers import event

from core.settings import load_config
from streaming.config import StreamConfig
from streaming.consumer import StreamConsumer, connect
from streaming.jobs import open_sink
from streaming.metrics import stream_metrics
from streaming.producer import produce

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from fault_servers import RedisServer

PROGRESS_LIMIT_S = 60.0
HANG_S = 2.0  # longer than the client's socket timeout below


def _wait(check, what: str) -> None:
    deadline = time.monotonic() + PROGRESS_LIMIT_S
    while not check():
        assert time.monotonic() < deadline, f"{what} within {PROGRESS_LIMIT_S:g} s"
        time.sleep(0.05)


def test_a_hung_redis_delays_the_consumer_and_loses_or_doubles_nothing(layout) -> None:
    server = RedisServer()
    try:
        cfg = load_config(StreamConfig, layout=layout).model_copy(
            update={
                "redis_url": server.url,
                "stream": "events",
                "group": "g",
                "block_ms": 100,
                "socket_timeout_s": 0.5,
                "retry_backoff_s": 0.1,
                "claim_every_s": 0.1,
                "claim_idle_ms": 200,
                "metrics_port": None,
            }
        )
        producer = redis.Redis.from_url(server.url, decode_responses=True)
        client = connect(cfg)
        stop = threading.Event()
        with open_sink(layout, "stream:events", push=False) as sink:
            consumer = StreamConsumer(client, cfg, sink, stream_metrics(), "c1")
            runner = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
            runner.start()
            first = [event(f"a{i}", f"s{i % 4}", 10 - i / 100) for i in range(50)]
            produce(producer, cfg.stream, first)
            _wait(lambda: consumer.stats.entries >= 50, "the first 50 events")

            second = [event(f"b{i}", f"s{i % 4}", 5 - i / 100) for i in range(50)]
            produce(producer, cfg.stream, second)
            server.pause()  # whatever the consumer was doing now hangs
            time.sleep(HANG_S)
            server.resume()

            def drained() -> bool:
                group = producer.xinfo_groups("events")[0]
                return group["pending"] == 0 and group["lag"] == 0

            _wait(drained, "every entry read and acknowledged")
            stop.set()
            runner.join(timeout=PROGRESS_LIMIT_S)
            assert not runner.is_alive()
            states = [sink.sessions.get(f"s{k}") for k in range(4)]
        producer.close()
        client.close()
    finally:
        server.stop()
    # a batch stored before its XACK timed out comes back as duplicates: state counts once
    results = consumer.stats.results
    assert results.get("accepted", 0) + results.get("duplicate", 0) >= 100
    assert "failed" not in results and "late" not in results
    assert sum(s.events for s in states) == 100
