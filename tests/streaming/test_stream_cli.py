"""`intent consume` as a process (metrics, SIGTERM) and `intent produce` from parquet."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stream_helpers import env_for, event
from typer.testing import CliRunner

from core.settings import load_config
from features.events import EVENT_SCHEMA
from streaming.config import StreamConfig
from streaming.jobs import consume, open_sink
from streaming.producer import produce

pytestmark = pytest.mark.redis

STARTUP_LIMIT_S = 120.0  # the consumer imports the serving stack before it listens
PROGRESS_LIMIT_S = 60.0
SHUTDOWN_LIMIT_S = 30.0


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)


def _metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _start_consumer(cfg, layout) -> tuple[subprocess.Popen, str]:
    """`intent consume` as a process; returns it and its metrics URL once it listens."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from intent.cli import main; main()",
            "consume",
            "--stream",
            cfg.stream,
            "--group",
            cfg.group,
            "--consumer",
            "cli",
            "--metrics-port",
            "0",
            "--no-push",
        ],
        env={**env_for(layout), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, errors), daemon=True).start()
    url, deadline = None, time.monotonic() + STARTUP_LIMIT_S
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = errors.get(timeout=1.0)
        except queue.Empty:
            continue
        found = re.search(r"metrics on (http://\S+/metrics)", line)
        url = found.group(1) if found else None
    if url is None:
        proc.kill()
        proc.wait()
        raise AssertionError("the consumer never reported its metrics port")
    return proc, url


def _terminate(proc: subprocess.Popen) -> tuple[int, dict]:
    """SIGTERM, wait for the exit (killed past SHUTDOWN_LIMIT_S): exit code, JSON summary."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=SHUTDOWN_LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return proc.returncode, {}
    lines = out.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}


def _wait_metric(url: str, name: str, done) -> str:
    text, deadline = "", time.monotonic() + PROGRESS_LIMIT_S
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=5.0).text
        if done(_metric(text, name)):
            break
        time.sleep(0.1)
    return text


def test_consume_serves_metrics_and_stops_cleanly_on_sigterm(bus, layout) -> None:
    cfg = bus.cfg
    proc, url = _start_consumer(cfg, layout)
    try:
        events = [event(f"e{i}", f"s{i % 5}", 10 - i / 10) for i in range(50)]
        produce(bus.client, cfg.stream, events)
        text = _wait_metric(url, "intent_stream_acked_total", lambda v: v == 50)
        assert _metric(text, "intent_stream_acked_total") == 50
        assert _metric(text, 'intent_stream_events_total{result="accepted"}') == 50
        assert _metric(text, "intent_stream_event_to_state_seconds_count") == 50
        assert "intent_stream_lag" in text and "intent_stream_pending" in text

    finally:
        code, summary = _terminate(proc)
    assert code == 0
    assert summary["entries"] == 50 and summary["results"] == {"accepted": 50}
    assert bus.client.xpending(cfg.stream, cfg.group)["pending"] == 0


def test_sigterm_mid_backlog_finishes_the_batch_acks_it_and_exits_0(bus, layout) -> None:
    """Stopped while draining a backlog: what was read is stored and acknowledged, the rest
    stays unread in the stream for the next consumer."""
    cfg = bus.cfg
    total = 20_000
    proc, url = _start_consumer(cfg, layout)
    try:
        events = [event(f"e{i}", f"s{i % 400}", 60 - i / 1000) for i in range(total)]
        produce(bus.client, cfg.stream, events)
        _wait_metric(url, "intent_stream_acked_total", lambda v: bool(v))
    finally:
        code, summary = _terminate(proc)
    assert code == 0
    done = summary["entries"]
    assert 0 < done <= total and summary["results"] == {"accepted": done}
    assert bus.client.xpending(cfg.stream, cfg.group)["pending"] == 0
    group = next(g for g in bus.client.xinfo_groups(cfg.stream) if g["name"] == cfg.group)
    assert group["lag"] == total - done
    with open_sink(layout, "test", push=False) as sink:
        stored = sum(
            sink.sessions.get(f"s{j}").events for j in range(400) if sink.sessions.get(f"s{j}")
        )
    assert stored == done


def test_produce_replays_a_parquet_in_time_order_and_it_is_consumed(
    bus, layout, tmp_path, monkeypatch
) -> None:
    from intent.cli import _register_commands, app

    now = datetime.now(UTC)
    rows = [
        {
            "event_id": "late-row",
            "user_id": "u1",
            "session_id": "s1",
            "ts": now - timedelta(minutes=1),
            "type": "scroll",
            "step": "welcome",
            "value": 40.0,
        },
        {
            "event_id": "early-row",
            "user_id": "u1",
            "session_id": "s1",
            "ts": now - timedelta(minutes=2),
            "type": "view",
            "step": "welcome",
            "value": float("nan"),
        },
    ]
    path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), path)
    monkeypatch.setenv("INTENT_HOME", str(layout.root))
    _register_commands()

    result = CliRunner().invoke(app, ["produce", "--file", str(path), "--stream", bus.cfg.stream])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["entries"] == 2
    sent = [json.loads(f["event"]) for _, f in bus.client.xrange(bus.cfg.stream)]
    assert [e["event_id"] for e in sent] == ["early-row", "late-row"]
    assert "value" not in sent[0] and sent[1]["value"] == 40.0
    stats = consume(layout, bus.cfg, "c1", threading.Event(), max_entries=2, push=False)
    assert stats.results == {"accepted": 2}


def test_stream_config_is_strict(layout) -> None:
    from pydantic import ValidationError

    cfg = load_config(StreamConfig, layout=layout)
    data = cfg.model_dump()
    with pytest.raises(ValidationError, match="block_ms"):
        StreamConfig.model_validate({**data, "block_ms": 6000, "socket_timeout_s": 5})
    with pytest.raises(ValidationError, match="extra"):
        StreamConfig.model_validate({**data, "batch": 10})


@pytest.mark.parametrize("shards", ["1", "2"])
def test_bench_consume_prints_throughput_floor_and_latency(redis_url, layout, shards) -> None:
    from intent.cli import _register_commands, app

    _register_commands()
    args = ["bench", "consume", "--events", "400", "--rate", "2000", "--shards", shards]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["end_to_end"]["results"] == {"accepted": 400}
    assert out["end_to_end"]["events_per_s"] > 0 and out["floor"]["read_ack_events_per_s"] > 0
    assert out["ratio_to_floor"] == pytest.approx(
        out["end_to_end"]["events_per_s"] / out["floor"]["read_ack_events_per_s"], abs=1e-3
    )
    assert out["latency"]["events"] == 100 and out["latency"]["unreadable_sessions"] == 0
    assert 0 < out["latency"]["p50_ms"] <= out["latency"]["p99_ms"]
    assert not [k for k in redis_client_keys(redis_url) if k.startswith("intent:bench:")]


def redis_client_keys(url: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return list(client.scan_iter(match="intent:bench:*", count=1000))
    finally:
        client.close()
