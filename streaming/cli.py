"""`intent consume`, `intent produce` and `intent bench consume`: thin over `streaming.jobs`."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from core import cli_kit as kit

_STREAM = typer.Option(help="Stream name (default: configs/stream.yaml's).")
_GROUP = typer.Option(help="Consumer group (default: configs/stream.yaml's).")


def register(app: typer.Typer) -> None:
    """Add `consume`, `produce` and `bench consume` to the `intent` app."""
    kit.command(app, "consume", consume_command)
    kit.command(app, "produce", produce_command)
    kit.command(kit.group(app, "bench", kit.BENCH_HELP), "consume", bench_consume_command)


def _user_errors() -> tuple[type[Exception], ...]:
    import redis

    from core.settings import ConfigError

    return ConfigError, redis.ConnectionError, OSError, ValueError


def consume_command(
    stream: Annotated[str | None, _STREAM] = None,
    group: Annotated[str | None, _GROUP] = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            help="Consumer name; reuse one to re-read its unacknowledged entries at start "
            "(default: <host>-<pid>, a new consumer per process)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Prometheus port (0: any free port; default: config)."),
    ] = None,
    shard: Annotated[
        int, typer.Option(min=0, help="The shard to read (configs/stream.yaml `shards`).")
    ] = 0,
    max_entries: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many entries (default: never).")
    ] = None,
    push: Annotated[
        bool, typer.Option(help="Push touched sessions to Feast, as POST /events does.")
    ] = True,
) -> None:
    """Read events from the stream's consumer group into the live session state until
    SIGTERM / SIGINT (the current batch is stored and acknowledged first, exit 0)."""
    from core.layout import Layout
    from streaming.consumer import default_consumer_name
    from streaming.jobs import consume, stream_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    layout = Layout.from_env()
    name = consumer or default_consumer_name()
    with kit.user_errors(*_user_errors()):
        cfg = stream_config(layout, stream=stream, group=group, metrics_port=metrics_port)
        where = cfg.shard_stream(shard)
        kit.err.print(f"consuming {where} as {cfg.group}/{name}", highlight=False)
        stats = consume(
            layout,
            cfg,
            name,
            stop,
            shard=shard,
            max_entries=max_entries,
            push=push,
            on_metrics=lambda port: kit.err.print(
                f"metrics on http://{cfg.metrics_host}:{port}/metrics", highlight=False
            ),
        )
    out = {"consumer": name, "stream": where, "group": cfg.group, **stats.__dict__}
    typer.echo(json.dumps(out))


def produce_command(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="Parquet file or folder of events.", exists=True)
    ],
    stream: Annotated[str | None, _STREAM] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N events.")] = None,
) -> None:
    """Replay a parquet of events onto the stream, in event-time order (one JSON event per
    entry, the shape of POST /events' items); prints JSON."""
    import time

    from core.layout import Layout
    from streaming.jobs import produce_file, shard_streams, stream_config

    with kit.user_errors(*_user_errors()):
        cfg = stream_config(Layout.from_env(), stream=stream)
        t0 = time.perf_counter()
        done = produce_file(cfg, file, limit)
        took = time.perf_counter() - t0
    out = {
        "streams": shard_streams(cfg),
        "entries": done.entries,
        "first_id": done.first_id,
        "last_id": done.last_id,
        "seconds": round(took, 3),
    }
    typer.echo(json.dumps(out))


def bench_consume_command(
    events: Annotated[int, typer.Option(min=100, help="Events per measurement.")] = 100_000,
    rate: Annotated[
        float, typer.Option(min=1, help="Producer rate (events/s) of the latency run.")
    ] = 2_000,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Entries per read (default: config).")
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Shards, one consumer process each (default: config)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic events.")] = 0,
) -> None:
    """Consumer events/s end to end (stream -> session state) against raw XREADGROUP + XACK,
    and XADD -> decision-ready latency at a fixed rate; prints JSON."""
    import tempfile

    from bench.consume import bench_consume
    from core.layout import Layout
    from streaming.jobs import stream_config

    layout = Layout.from_env()
    with kit.user_errors(*_user_errors()):
        cfg = stream_config(layout, batch_size=batch_size, shards=shards)
        with tempfile.TemporaryDirectory(prefix="intent-bench-consume-") as tmp:
            result = bench_consume(Path(tmp), list(layout.config_dirs), cfg, events, rate, seed)
    typer.echo(json.dumps(result, indent=2))
