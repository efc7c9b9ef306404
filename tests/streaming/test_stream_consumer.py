"""The stream consumer against the local Redis: state, quarantine, dedup, crash recovery."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest
from stream_helpers import REPO, Bus, env_for, event

from core.layout import Layout
from streaming.consumer import ensure_group
from streaming.jobs import consume, open_sink
from streaming.producer import produce

pytestmark = pytest.mark.redis

CRASH_LIMIT_S = 120.0  # the doomed consumer imports the serving stack before it dies


def _run(layout: Layout, bus: Bus, n: int, name: str = "c1"):
    return consume(layout, bus.cfg, name, threading.Event(), max_entries=n, push=False)


def _session_events(layout: Layout, sid: str) -> int | None:
    with open_sink(layout, "test", push=False) as sink:
        state = sink.sessions.get(sid)
    return None if state is None else state.events


def _pending(bus: Bus) -> int:
    return bus.client.xpending(bus.cfg.stream, bus.cfg.group)["pending"]


def test_valid_events_land_in_state_and_poison_is_quarantined_not_blocking(bus, layout) -> None:
    e1, e2, e3 = event("e1", "s1", 5), event("e2", "s1", 4, "click"), event("e3", "s2", 3)
    bad_type = {**event("e4", "s2", 2), "type": "tap"}
    produce(bus.client, bus.cfg.stream, [e1, "not json {", e2, bad_type, e1, e3])
    bus.client.xadd(bus.cfg.stream, {"other": "x"})

    stats = _run(layout, bus, 7)

    assert stats.results == {"accepted": 3, "duplicate": 1, "rejected": 3}
    assert (_session_events(layout, "s1"), _session_events(layout, "s2")) == (2, 1)
    assert _pending(bus) == 0  # poison entries are acknowledged too
    files = sorted(layout.quarantine.glob("stream-rejected-events-*.parquet"))
    rows = pq.read_table(files).to_pylist() if files else []
    reasons = sorted(r["reason"] for r in rows)
    assert len(reasons) == 3
    assert any("not valid JSON" in r for r in reasons)
    assert any("no `event` field" in r for r in reasons)
    assert any(r.startswith("type:") for r in reasons)
    assert {r["source"] for r in rows} == {f"stream:{bus.cfg.stream}"}
    assert any(r["event_id"] == "e4" for r in rows)


def test_a_redelivered_event_is_folded_once(bus, layout) -> None:
    produce(bus.client, bus.cfg.stream, [event("e1", "s1", 5), event("e2", "s1", 4)])
    assert _run(layout, bus, 2).results == {"accepted": 2}
    produce(bus.client, bus.cfg.stream, [event("e2", "s1", 4), event("e3", "s1", 3)])

    stats = _run(layout, bus, 2)

    assert stats.results == {"accepted": 1, "duplicate": 1}
    assert _session_events(layout, "s1") == 3


@pytest.mark.parametrize("restart_as", ["doomed", "rescuer"])
def test_crash_between_store_and_ack_is_reclaimed_and_folded_once(bus, layout, restart_as) -> None:
    """The consumer dies (SIGKILL) after storing a batch, before XACK: the entries stay
    pending; a restart under the same name re-reads them at once, another consumer claims
    them once idle; the store's dedup keeps the state as after one delivery."""
    events = [event("e1", "s1", 5), event("e2", "s1", 4, "click"), event("e3", "s2", 3)]
    produce(bus.client, bus.cfg.stream, events)
    helper = REPO / "tests" / "streaming" / "stream_helpers.py"
    proc = subprocess.run(
        [sys.executable, str(helper), str(layout.root), bus.cfg.model_dump_json()],
        env=env_for(layout),
        capture_output=True,
        text=True,
        timeout=CRASH_LIMIT_S,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert _pending(bus) == 3  # stored, never acknowledged
    assert (_session_events(layout, "s1"), _session_events(layout, "s2")) == (2, 1)

    stats = _run(layout, bus, 3, name=restart_as)

    assert stats.results == {"duplicate": 3}
    assert stats.claimed == (3 if restart_as == "rescuer" else 0)
    assert _pending(bus) == 0
    assert (_session_events(layout, "s1"), _session_events(layout, "s2")) == (2, 1)


def test_a_failed_store_write_leaves_the_batch_pending_and_it_is_retried(bus, layout) -> None:
    """A batch whose session-store write raises is not acknowledged; the consumer re-reads
    its own pending list, one entry at a time, and applies it."""
    from streaming.consumer import StreamConsumer
    from streaming.metrics import stream_metrics

    produce(bus.client, bus.cfg.stream, [event("e1", "s1", 5), event("e2", "s1", 4)])
    with open_sink(layout, "stream:test", push=False) as sink:
        store = sink.sessions
        real_apply = store.apply
        calls = []

        def failing_once(events):
            calls.append(len(events))
            if len(calls) == 1:
                raise OSError("disk full")
            return real_apply(events)

        store.apply = failing_once  # the real store, failing its first write
        consumer = StreamConsumer(bus.client, bus.cfg, sink, stream_metrics(), "c1")
        stats = consumer.run(threading.Event(), max_entries=2)
        assert stats.failures == 1 and stats.results == {"accepted": 2}
        assert calls == [2, 1, 1]
        assert store.get("s1").events == 2
    assert _pending(bus) == 0


def test_shards_keep_each_session_on_one_stream_and_each_shard_is_consumed(bus, layout) -> None:
    from streaming.producer import shard_of

    cfg = bus.cfg.model_copy(update={"shards": 2})
    streams = [cfg.shard_stream(0), cfg.shard_stream(1)]
    events = [event(f"e{i}", f"s{i % 6}", 10 - i / 10) for i in range(30)]
    try:
        produce(bus.client, streams, [json.dumps(e) for e in events])
        sent = {
            k: [json.loads(f["event"])["session_id"] for _, f in bus.client.xrange(s)]
            for k, s in enumerate(streams)
        }
        assert set(sent[0]).isdisjoint(sent[1]) and sent[0] and sent[1]
        for k in (0, 1):
            assert {shard_of(e, 2) for e in events if e["session_id"] in sent[k]} == {k}
        for k in (0, 1):
            stats = consume(
                layout,
                cfg,
                f"c{k}",
                threading.Event(),
                shard=k,
                max_entries=len(sent[k]),
                push=False,
            )
            assert stats.results == {"accepted": len(sent[k])}
        assert sum(_session_events(layout, f"s{j}") for j in range(6)) == 30
    finally:
        bus.client.delete(*streams)


def test_an_entry_the_store_always_fails_on_is_quarantined_after_max_deliveries(
    bus, layout
) -> None:
    """One entry that makes every write raise (not a validation failure) is isolated from its
    batch, quarantined with the error after `max_deliveries`, and the others are applied."""
    from streaming.consumer import StreamConsumer
    from streaming.metrics import stream_metrics

    cfg = bus.cfg.model_copy(update={"max_deliveries": 3})
    events = [event("e1", "s1", 5), event("bomb", "s2", 4), event("e3", "s1", 3)]
    produce(bus.client, cfg.stream, events)
    with open_sink(layout, "stream:test", push=False) as sink:
        store = sink.sessions
        real_apply = store.apply

        def explodes_on_bomb(batch):
            if any(e.event_id == "bomb" for e in batch):
                raise RuntimeError("cannot fold this one")
            return real_apply(batch)

        store.apply = explodes_on_bomb
        consumer = StreamConsumer(bus.client, cfg, sink, stream_metrics(), "c1")
        stats = consumer.run(threading.Event(), max_entries=3)
        assert stats.results == {"accepted": 2, "failed": 1}
        assert store.get("s1").events == 2 and store.get("s2") is None
    assert _pending(bus) == 0
    rows = pq.read_table(sorted(layout.quarantine.glob("stream-rejected-*.parquet"))).to_pylist()
    assert [(r["event_id"], r["reason"]) for r in rows] == [
        ("bomb", "delivered 4 times, never applied (last error RuntimeError: cannot fold this one)")
    ]


@pytest.mark.slow
def test_an_entry_the_consumer_dies_on_is_quarantined_after_max_deliveries(bus, layout) -> None:
    """A consumer that dies (SIGKILL) on one entry every time: restarts re-read the pending
    batch one entry at a time, the others are acknowledged, and the killer is quarantined once
    delivered more than `max_deliveries` times - the stream moves on."""
    cfg = bus.cfg.model_copy(update={"max_deliveries": 3})
    events = [event("e1", "s1", 5), event("killer", "s2", 4), event("e3", "s1", 3)]
    produce(bus.client, cfg.stream, events)
    ensure_group(bus.client, cfg.stream, cfg.group)
    helper = REPO / "tests" / "streaming" / "stream_helpers.py"
    codes = []
    for _ in range(12):  # each run handles one entry or dies
        group = next(g for g in bus.client.xinfo_groups(cfg.stream) if g["name"] == cfg.group)
        if codes and group["pending"] == 0 and group["lag"] == 0:
            break
        proc = subprocess.run(
            [sys.executable, str(helper), str(layout.root), cfg.model_dump_json(), "killer", "1"],
            env=env_for(layout),
            capture_output=True,
            text=True,
            timeout=CRASH_LIMIT_S,
        )
        codes.append(proc.returncode)
        assert proc.returncode in (0, -9), proc.stderr[-2000:]
    assert codes.count(-9) == 3  # the first batch, then the killer alone twice
    assert _pending(bus) == 0
    assert _session_events(layout, "s1") == 2
    rows = pq.read_table(sorted(layout.quarantine.glob("stream-rejected-*.parquet"))).to_pylist()
    assert [(r["event_id"], r["reason"]) for r in rows] == [
        ("killer", "delivered 4 times, never applied (the consumer died on it)")
    ]


def test_the_redis_session_store_shared_with_replicas_takes_the_stream(bus, layout) -> None:
    """With `backends.sessions.kind: redis` the consumer folds into the store the replicas
    read; a redelivered event is a duplicate there too."""
    import uuid

    import redis as redis_lib

    from core.settings import load_config
    from features.config import EventsConfig, SignalsConfig
    from serving.app import request_rules
    from serving.assemble import Configs
    from serving.sessions_redis import RedisSessionStore
    from streaming.consumer import Sink, StreamConsumer
    from streaming.metrics import stream_metrics

    prefix = f"test-{uuid.uuid4().hex}:"
    gap_s = load_config(EventsConfig, layout=layout).session_gap_minutes * 60.0
    store = RedisSessionStore(
        bus.cfg.redis_url, prefix, load_config(SignalsConfig, layout=layout), gap_s, 86_400.0
    )
    try:
        sink = Sink(store, None, layout, request_rules(Configs.load(layout)), "stream:test")
        events = [event("e1", "s1", 5), event("e2", "s1", 4, "click"), event("e1", "s1", 5)]
        produce(bus.client, bus.cfg.stream, events[:2])
        first = StreamConsumer(bus.client, bus.cfg, sink, stream_metrics(), "c1")
        assert first.run(threading.Event(), max_entries=2).results == {"accepted": 2}
        produce(bus.client, bus.cfg.stream, events[2:])
        again = StreamConsumer(bus.client, bus.cfg, sink, stream_metrics(), "c2")
        assert again.run(threading.Event(), max_entries=1).results == {"duplicate": 1}
        assert store.get("s1").events == 2
    finally:
        store.close()
        client = redis_lib.Redis.from_url(bus.cfg.redis_url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_entries_parse_as_json_would_fast_path_or_not() -> None:
    """orjson parses most entries; what it refuses (NaN tokens) must still parse as json
    does (then /events' validation decides), and broken text is rejected."""
    from streaming.consumer import FIELD, parse_entries

    texts = ['{"a": 1.5, "b": "x"}', '{"value": NaN}', '{"n": 123456789012345678901234567890}']
    items, rejected, bad = parse_entries(
        [(f"{i}-0", {FIELD: t}) for i, t in enumerate([*texts, "not json {"])]
    )
    assert items[0] == {"a": 1.5, "b": "x"}
    assert float(items[2]["n"]) == float(json.loads(texts[2])["n"])  # orjson: past 64 bits, a float
    assert list(items[1]) == ["value"] and items[1]["value"] != items[1]["value"]  # NaN
    assert [r.index for r in rejected] == [3] and bad == ["not json {"]
    assert "not valid JSON" in rejected[0].reason
