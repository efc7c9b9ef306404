"""The jobs behind `intent consume` and `intent produce` (the CLI only parses options)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.layout import Layout
from core.settings import load_config
from streaming.config import StreamConfig
from streaming.consumer import BatchResult, RunStats, Sink, StreamConsumer, connect
from streaming.metrics import StreamMetrics, stream_metrics
from streaming.producer import Produced, produce, read_events

log = logging.getLogger("intent.streaming")


def stream_config(
    layout: Layout, *, stream: str | None = None, group: str | None = None, **overrides: Any
) -> StreamConfig:
    """`configs/stream.yaml` with the options given on the command line (None: keep)."""
    cfg = load_config(StreamConfig, layout=layout)
    changes = {"stream": stream, "group": group, **overrides}
    return cfg.model_copy(update={k: v for k, v in changes.items() if v is not None})


@contextlib.contextmanager
def open_sink(layout: Layout, source: str, *, push: bool = True) -> Iterator[Sink]:
    """The serving path's session store, Feast reader (for the push) and request rules, as
    configured in `configs/serving.yaml` - the same ones POST /events writes through."""
    from serving.app import request_rules
    from serving.assemble import Configs, open_sessions
    from serving.feature_read import open_feast_reader

    configs = Configs.load(layout)
    backends = configs.serving.backends
    if backends.sessions.kind == "memory":
        log.warning("sessions backend is memory: consumed state is lost when the process ends")
    reader = None
    if push and configs.serving.features.online_store == "feast":
        reader, detail = open_feast_reader(layout, None)
        log.info("online store for the push: %s", detail)
    sessions = open_sessions(backends, configs.signals, configs.events, layout)
    try:
        yield Sink(sessions, reader, layout, request_rules(configs), source)
    finally:
        sessions.close()


@dataclass(frozen=True)
class MetricsServer:
    port: int
    close: Callable[[], None]


def serve_metrics(metrics: StreamMetrics, host: str, port: int) -> MetricsServer:
    """prometheus_client's HTTP server on a daemon thread (port 0: a free one)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)

    def close() -> None:
        server.shutdown()
        server.server_close()

    return MetricsServer(server.server_port, close)


def consume(
    layout: Layout,
    cfg: StreamConfig,
    name: str,
    stop: threading.Event,
    *,
    shard: int = 0,
    max_entries: int | None = None,
    push: bool = True,
    on_metrics: Callable[[int], None] | None = None,
    before_ack: Callable[[BatchResult], None] | None = None,
) -> RunStats:
    """Run one consumer of `shard`'s stream until `stop` is set (or `max_entries`); serves
    metrics on `cfg.metrics_port` unless it is None and reports the bound port to
    `on_metrics`."""
    cfg = cfg.model_copy(update={"stream": cfg.shard_stream(shard), "shards": 1})
    metrics = stream_metrics()
    server = None
    if cfg.metrics_port is not None:
        server = serve_metrics(metrics, cfg.metrics_host, cfg.metrics_port)
        if on_metrics is not None:
            on_metrics(server.port)
    client = connect(cfg)
    try:
        with open_sink(layout, f"stream:{cfg.stream}", push=push) as sink:
            consumer = StreamConsumer(client, cfg, sink, metrics, name, before_ack=before_ack)
            return consumer.run(stop, max_entries)
    finally:
        client.close()
        if server is not None:
            server.close()


def shard_streams(cfg: StreamConfig) -> list[str]:
    return [cfg.shard_stream(k) for k in range(cfg.shards)]


def produce_file(cfg: StreamConfig, path: Path, limit: int | None = None) -> Produced:
    """Replay a parquet file (or folder) of events onto the stream (its shards), in ts order."""
    client = connect(cfg)
    try:
        return produce(client, shard_streams(cfg), read_events(path, limit), maxlen=cfg.maxlen)
    finally:
        client.close()
