"""`intent produce`: replay a parquet of events onto the stream, in event-time order.

Each row becomes one entry whose `event` field is the row as a JSON object - the shape of an
item of POST /events' `events` (nulls and NaN left out, `ts` as ISO 8601). Rows are not
validated here: the consumer does that, so a bad row lands in its quarantine.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from features.events import COLUMN_NAMES
from streaming.consumer import FIELD


def row_to_event(row: dict[str, Any]) -> dict[str, Any]:
    """A table row as an event object: known columns only, no nulls / NaN, ISO times."""
    out: dict[str, Any] = {}
    for name in COLUMN_NAMES:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def read_events(path: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The file's (or dataset folder's) rows as event objects, sorted by `ts` when present."""
    import pyarrow.dataset as ds

    table = ds.dataset(path, format="parquet").to_table()
    if "ts" in table.column_names:
        table = table.sort_by("ts")
    if limit is not None:
        table = table.slice(0, limit)
    for batch in table.to_batches(max_chunksize=10_000):
        for row in batch.to_pylist():
            yield row_to_event(row)


@dataclass(frozen=True)
class Produced:
    entries: int
    first_id: str | None
    last_id: str | None


def shard_of(event: dict[str, Any] | str, shards: int) -> int:
    """The shard of an event: by session id, else by actor (whose events derive sessions),
    so one session's events keep their order; text that is no JSON object by its hash."""
    if shards == 1:
        return 0
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError:
            return zlib.crc32(event.encode()) % shards
    key = None
    if isinstance(event, dict):
        key = event.get("session_id") or event.get("user_id") or event.get("anonymous_id")
    text = key if isinstance(key, str) else json.dumps(event, sort_keys=True, default=str)
    return zlib.crc32(text.encode()) % shards


def produce(
    client: redis.Redis,
    stream: str | Sequence[str],
    events: Iterable[dict[str, Any] | str],
    *,
    maxlen: int | None = None,
    chunk: int = 1000,
) -> Produced:
    """XADD each event (an object, or raw text sent as is), pipelined `chunk` at a time, to
    `stream` or, given the shards' streams, to its shard's (`shard_of`); `maxlen` trims each
    stream approximately as it grows."""
    streams = [stream] if isinstance(stream, str) else list(stream)
    count, first, last = 0, None, None
    pipe = client.pipeline(transaction=False)
    pending = 0

    def flush() -> None:
        nonlocal first, last
        ids = pipe.execute()
        if ids:
            first = first or ids[0]
            last = ids[-1]

    for event in events:
        text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        target = streams[shard_of(event, len(streams))]
        pipe.xadd(target, {FIELD: text}, maxlen=maxlen, approximate=True)
        pending += 1
        count += 1
        if pending >= chunk:
            flush()
            pending = 0
    if pending:
        flush()
    return Produced(count, first, last)
