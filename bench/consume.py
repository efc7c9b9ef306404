"""`intent bench consume`: the stream consumer end to end against a floor of raw Redis.

Three measurements on fresh, uniquely named streams (deleted afterwards), with synthetic
valid events timestamped around now:

- floor: XADD the events (pipelined), then XREADGROUP + XACK them with no processing - what
  Redis and redis-py cost on this machine;
- throughput: the real consumer drains the same number of events from a backlog - parse,
  validate (POST /events' contract), fold into the configured session store, acknowledge;
- latency: a producer thread XADDs at `rate` events/s while the consumer runs; an event's
  latency is from its XADD (the entry id's time) to its session state being stored and read
  back (decision-ready: the engine's next decision for that session sees it).

The Feast push is off (the bench's layout has no feature store): it is store-bound and
best effort, like POST /events'.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis

from core.layout import Layout
from streaming.config import StreamConfig
from streaming.consumer import BatchResult, Sink, StreamConsumer, connect, ensure_group
from streaming.jobs import open_sink
from streaming.metrics import stream_metrics
from streaming.producer import produce

STARTUP_LIMIT_S = 120.0  # a consumer process imports the serving stack before it reads
DRAIN_LIMIT_S = 1800.0

_TYPES = ("view", "click", "scroll", "hover", "back", "field_error", "help_open")


def synthetic_events(n: int, steps: list[str], start: float, seed: int) -> list[str]:
    """`n` valid events as JSON text: ~20 events per session, sessions interleaved, times
    increasing from `start` (so no event is late)."""
    rng = np.random.default_rng(seed)
    sessions = max(n // 20, 1)
    sid = rng.integers(0, sessions, n)
    kinds = rng.choice(len(_TYPES), n)
    step = rng.choice(len(steps), n)
    values = rng.uniform(0, 100, n)
    out = []
    for i in range(n):
        kind = _TYPES[kinds[i]]
        event: dict[str, Any] = {
            "event_id": f"b{seed}-{i}",
            "user_id": f"u{sid[i]}",
            "session_id": f"s{seed}-{sid[i]}",
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i * 1e-3))
            + f".{int((start + i * 1e-3) % 1 * 1e6):06d}Z",
            "type": kind,
            "step": steps[step[i]],
        }
        if kind in ("scroll", "hover"):
            event["value"] = round(float(values[i]), 2)
        out.append(json.dumps(event, separators=(",", ":")))
    return out


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def floor(client: redis.Redis, stream: str, events: list[str], batch: int) -> dict[str, float]:
    """XADD all events, then read and acknowledge them without processing."""
    t0 = time.perf_counter()
    produce(client, stream, events)
    added = time.perf_counter() - t0
    ensure_group(client, stream, "floor")
    t0 = time.perf_counter()
    read = 0
    while read < len(events):
        got = client.xreadgroup("floor", "c", {stream: ">"}, count=batch)
        ids = [entry_id for entry_id, _ in got[0][1]]
        client.xack(stream, "floor", *ids)
        read += len(ids)
    took = time.perf_counter() - t0
    return {
        "xadd_events_per_s": _rate(len(events), added),
        "read_ack_events_per_s": _rate(read, took),
    }


def _consumer(client: redis.Redis, cfg: StreamConfig, sink: Sink, hook: Callable | None):
    return StreamConsumer(client, cfg, sink, stream_metrics(), "bench", before_ack=hook)


def throughput(client: redis.Redis, cfg: StreamConfig, sink: Sink, events: list[str]) -> dict:
    """Drain a backlog of `events` through the real consumer."""
    produce(client, cfg.stream, events)
    consumer = _consumer(client, cfg, sink, None)
    t0, cpu0 = time.perf_counter(), time.process_time()
    stats = consumer.run(threading.Event(), max_entries=len(events))
    took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "events": stats.entries,
        "seconds": round(took, 3),
        "events_per_s": _rate(stats.entries, took),
        # the consumer's own CPU (Redis excluded): what one free core would sustain
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_s": _rate(stats.entries, cpu),
        "results": stats.results,
        "batches": stats.batches,
    }


def _drain_shard(root: str, configs: list[str], cfg_json: str, shard: int, n: int, sync, out):
    """One consumer process of `throughput_sharded`: drain `n` entries of its shard."""
    layout = Layout.under(Path(root), configs=[Path(c) for c in configs])
    cfg = StreamConfig.model_validate_json(cfg_json)
    cfg = cfg.model_copy(update={"stream": cfg.shard_stream(shard), "shards": 1})
    client = connect(cfg)
    with open_sink(layout, f"stream:{cfg.stream}", push=False) as sink:
        consumer = StreamConsumer(client, cfg, sink, stream_metrics(), f"bench-{shard}")
        sync.wait()  # every process started and opened its store
        t0, cpu0 = time.time(), time.process_time()
        stats = consumer.run(threading.Event(), max_entries=n)
        out.put((t0, time.time(), time.process_time() - cpu0, stats.entries, stats.results))
    client.close()


def throughput_sharded(
    client: redis.Redis, cfg: StreamConfig, layout: Layout, events: list[str]
) -> dict:
    """Drain a backlog spread over `cfg.shards` streams, one consumer process per shard,
    all writing the same session store; events/s over the first start to the last end."""
    import multiprocessing as mp

    streams = [cfg.shard_stream(k) for k in range(cfg.shards)]
    produce(client, streams, events)
    for stream in streams:
        ensure_group(client, stream, cfg.group)
    counts = [client.xlen(stream) for stream in streams]
    ctx = mp.get_context("spawn")
    sync, out = ctx.Barrier(cfg.shards + 1), ctx.Queue()
    configs = [str(c) for c in layout.config_dirs]
    procs = [
        ctx.Process(
            target=_drain_shard,
            args=(str(layout.root), configs, cfg.model_dump_json(), k, counts[k], sync, out),
        )
        for k in range(cfg.shards)
    ]
    for proc in procs:
        proc.start()
    sync.wait(timeout=STARTUP_LIMIT_S)
    done = [out.get(timeout=DRAIN_LIMIT_S) for _ in procs]
    for proc in procs:
        proc.join()
    took = max(d[1] for d in done) - min(d[0] for d in done)
    cpu = sum(d[2] for d in done)
    entries = sum(d[3] for d in done)
    results: dict[str, int] = {}
    for d in done:
        for name, n in d[4].items():
            results[name] = results.get(name, 0) + n
    return {
        "events": entries,
        "processes": cfg.shards,
        "seconds": round(took, 3),
        "events_per_s": _rate(entries, took),
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_s": _rate(entries, cpu),
        "results": results,
    }


def latency(
    client: redis.Redis, cfg: StreamConfig, sink: Sink, events: list[str], rate: float
) -> dict:
    """Produce at `rate` events/s while consuming; per-event XADD -> state readable."""
    lat: list[float] = []
    missing = 0

    def ready(result: BatchResult) -> None:
        nonlocal missing
        if result.applied is not None and result.applied.result.touched:
            sid = next(iter(result.applied.result.touched))
            if sink.sessions.get(sid) is None:
                missing += 1
        done = time.time()
        lat.extend(done - int(i.split("-", 1)[0]) / 1000.0 for i in result.ids)

    tick = 0.01
    per_tick = max(int(rate * tick), 1)

    def pace() -> None:
        start = time.perf_counter()
        for k, i in enumerate(range(0, len(events), per_tick)):
            produce(client, cfg.stream, events[i : i + per_tick])
            wait = start + (k + 1) * tick - time.perf_counter()
            if wait > 0:
                time.sleep(wait)

    producer = threading.Thread(target=pace, daemon=True)
    consumer = _consumer(client, cfg, sink, ready)
    ensure_group(client, cfg.stream, cfg.group)
    producer.start()
    consumer.run(threading.Event(), max_entries=len(events))
    producer.join()
    ms = np.array(lat) * 1000.0
    return {
        "events": len(lat),
        "rate_events_per_s": rate,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "unreadable_sessions": missing,
    }


def bench_consume(
    tmp: Path, configs: Path | list[Path], cfg: StreamConfig, events: int, rate: float, seed: int
) -> dict[str, Any]:
    """Floor, throughput and latency on streams named `intent:bench:<random>:*`."""
    from core.settings import load_config
    from features.config import FunnelConfig

    layout = Layout.under(tmp, configs=configs).ensure()
    steps = load_config(FunnelConfig, layout=layout).steps
    tag = f"intent:bench:{uuid.uuid4().hex[:8]}"
    start = time.time() - 3600.0
    base = cfg.model_copy(update={"block_ms": 100, "metrics_port": None, "claim_every_s": 3600})
    client = connect(cfg)
    streams = [f"{tag}:floor", f"{tag}:throughput", f"{tag}:latency"]
    try:
        first = synthetic_events(events, steps, start, seed)
        raw = floor(client, streams[0], first, cfg.batch_size)
        second = synthetic_events(events, steps, start, seed + 1)
        if cfg.shards > 1:
            sharded = base.model_copy(update={"stream": streams[1], "group": "bench"})
            streams += [sharded.shard_stream(k) for k in range(cfg.shards)]
            run = throughput_sharded(client, sharded, layout, second)
        with open_sink(layout, f"stream:{tag}", push=False) as sink:
            if cfg.shards == 1:
                run = throughput(
                    client,
                    base.model_copy(update={"stream": streams[1], "group": "bench"}),
                    sink,
                    second,
                )
            paced = latency(
                client,
                base.model_copy(update={"stream": streams[2], "group": "bench"}),
                sink,
                synthetic_events(max(events // 4, 1), steps, start + events * 1e-3 + 1, seed + 2),
                rate,
            )
    finally:
        client.delete(*streams)
        client.close()
    return {
        "bench": "consume",
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work sharing the cores
        "batch_size": cfg.batch_size,
        "shards": cfg.shards,
        "sessions_backend": load_config_kind(layout),
        "floor": raw,
        "end_to_end": run,
        "ratio_to_floor": round(run["events_per_s"] / raw["read_ack_events_per_s"], 3),
        "latency": paced,
        "target_events_per_s": 20_000,
    }


def load_config_kind(layout: Layout) -> str:
    from core.settings import load_config
    from serving.config import ServingConfig

    return load_config(ServingConfig, layout=layout).backends.sessions.kind
