"""Redis Streams consumer: events from a consumer group into the live session state.

At least once, effectively once in state: a batch is validated with POST /events' contract
(`serving.schemas.split_events`), folded into the session store in one transaction
(`serving.event_fold.apply_valid`, which dedups by `event_id`), pushed to Feast, and only
then acknowledged (XACK). A consumer that dies between the store's commit and the XACK
leaves its entries pending: a restart under the same name reads them again first, any
other consumer XAUTOCLAIMs them once idle for `claim_idle_ms`, and the store's dedup makes
the second delivery a duplicate. Invalid entries (not JSON, no `event` field, an event
/events would reject) are quarantined with the reason and acknowledged - they never block
the stream. A batch interrupted by an outage (Redis, the session store unavailable) is
retried as it is every `retry_backoff_s`. A batch whose store write fails otherwise is not
acknowledged; its entries are retried one at a time, and an entry delivered more than
`max_deliveries` times (it failed, or killed the consumer, each time) is quarantined with
its last error and acknowledged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from core.layout import Layout
from serving.event_fold import Applied, apply_valid, quarantine_rejected
from serving.schemas import RejectedEvent, RequestRules, split_events
from serving.sessions import SessionStore, SessionStoreUnavailable
from streaming.config import StreamConfig
from streaming.metrics import StreamMetrics

log = logging.getLogger("intent.streaming")

FIELD = "event"  # the one field of an entry: an event object as JSON text

Entry = tuple[str, dict[str, str]]

# Outages, not bad entries: the batch is retried as it is, without counting a delivery.
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, SessionStoreUnavailable)


@dataclass(frozen=True)
class Sink:
    """Where a batch's events go: the live state, the online store, the quarantine."""

    sessions: SessionStore
    reader: Any  # the Feast online reader (push), or None
    layout: Layout
    rules: RequestRules
    source: str  # quarantine source, `stream:<stream name>`


@dataclass(frozen=True)
class BatchResult:
    ids: list[str]  # every entry of the batch: all are acknowledged
    applied: Applied | None
    rejected: list[RejectedEvent]
    stored_at: float  # wall-clock time the state was committed


def parse_entries(entries: list[Entry]) -> tuple[list[Any], list[RejectedEvent], list[Any]]:
    """Each entry's event as a Python object; an entry whose `event` field is missing or not
    JSON is rejected here (the rest is `split_events`' job). Returns (items, rejected, raw
    text of the rejected)."""
    items: list[Any] = []
    rejected: list[RejectedEvent] = []
    bad: list[Any] = []
    for index, (entry_id, fields) in enumerate(entries):
        text = fields.get(FIELD)
        if text is None:
            reason = f"entry {entry_id}: no `{FIELD}` field"
        else:
            try:
                items.append(_loads(text))
                continue
            except ValueError as exc:
                reason = f"{FIELD}: not valid JSON ({exc.msg} at {exc.pos})"
        rejected.append(RejectedEvent(index=index, event_id=None, fields=[FIELD], reason=reason))
        bad.append(text if text is not None else fields)
    return items, rejected, bad


def _loads(text: str) -> Any:
    """json.loads, via orjson (several times faster) for the text orjson takes; the rest
    (NaN / Infinity tokens) through json, so what parses and the error of what does not stay
    json's. One difference: orjson reads an integer past 64 bits as a float (validation
    treats both alike: ids must be strings, `value` is a float)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def handle_batch(sink: Sink, entries: list[Entry], now: float) -> BatchResult:
    """Validate, apply (durable once this returns), quarantine; the caller then acks all."""
    items, rejected, bad = parse_entries(entries)
    split = split_events(items, sink.rules, now)
    applied = None
    if split.valid:
        applied = apply_valid(sink.sessions, sink.reader, sink.layout, split.valid, sink.source)
    stored_at = time.time()
    rejected = [*rejected, *split.rejected]
    if rejected:
        quarantine_rejected(sink.layout, [*bad, *split.rejected_items], rejected, sink.source)
    return BatchResult([entry_id for entry_id, _ in entries], applied, rejected, stored_at)


def default_consumer_name() -> str:
    """Unique per process: a restarted process is a new consumer, and its predecessor's
    pending entries are XAUTOCLAIMed once idle (pass a stable name to re-read them at once)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def connect(cfg: StreamConfig) -> redis.Redis:
    return redis.Redis.from_url(
        cfg.redis_url, socket_timeout=cfg.socket_timeout_s, decode_responses=True
    )


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the group (and the stream) if needed; a new group starts at the stream's start."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _entry_ms(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000.0


@dataclass
class RunStats:
    entries: int = 0
    batches: int = 0
    claimed: int = 0
    failures: int = 0
    results: dict[str, int] = field(default_factory=dict)

    def add(self, result: str, n: int) -> None:
        if n:
            self.results[result] = self.results.get(result, 0) + n


class StreamConsumer:
    """One member of the consumer group. `before_ack` runs after a batch is stored and before
    it is acknowledged (tests use it to die there)."""

    def __init__(
        self,
        client: redis.Redis,
        cfg: StreamConfig,
        sink: Sink,
        metrics: StreamMetrics,
        name: str,
        before_ack: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.sink = sink
        self.metrics = metrics
        self.name = name
        self.before_ack = before_ack
        self.stats = RunStats()
        self._own_pending = True  # start with what this name read and never acknowledged
        self._retry: list[Entry] | None = None  # a batch an outage interrupted
        self._errors: dict[str, str] = {}  # entry id -> its last error, when applied alone
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_lag = 0.0
        self._acked_at_lag = (time.monotonic(), 0)

    def _read(self) -> list[Entry]:
        """New entries in batches; entries delivered before (this name's pending list at
        start or after a failure, or claimed from an idle consumer) one at a time, so one
        bad entry is found and quarantined alone (`_recovered`)."""
        cfg = self.cfg
        if self._own_pending:
            got = self.client.xreadgroup(cfg.group, self.name, {cfg.stream: "0"}, count=1)
            entries = self._recovered(got[0][1] if got else [])
            if entries is not None:
                return entries
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            cursor, claimed, _deleted = self.client.xautoclaim(
                cfg.stream,
                cfg.group,
                self.name,
                min_idle_time=cfg.claim_idle_ms,
                start_id=self._claim_cursor,
                count=1,
            )
            self._claim_cursor = cursor
            if cursor == "0-0":  # scanned the whole pending list
                self._next_claim = now + cfg.claim_every_s
            claimed = [e for e in claimed if e]
            if claimed:
                self.metrics.claimed.inc(len(claimed))
                self.stats.claimed += len(claimed)
                log.info("claimed entry %s from an idle consumer", claimed[0][0])
                return self._recovered(claimed) or []
        got = self.client.xreadgroup(
            cfg.group, self.name, {cfg.stream: ">"}, count=cfg.batch_size, block=cfg.block_ms
        )
        return got[0][1] if got else []

    def _recovered(self, entries: list[Entry]) -> list[Entry] | None:
        """A redelivered entry to apply, [] when it was settled here, None when there was
        none. Settled: trimmed from the stream while pending (acked), or delivered more than
        `max_deliveries` times - it failed, or a consumer died on it, each time - (quarantined
        with the last error, acked)."""
        if not entries:
            return None
        entry_id, fields = entries[0]
        if not fields:
            self.client.xack(self.cfg.stream, self.cfg.group, entry_id)
            return []
        info = self.client.xpending_range(
            self.cfg.stream, self.cfg.group, min=entry_id, max=entry_id, count=1
        )
        delivered = info[0]["times_delivered"] if info else 1
        if delivered > self.cfg.max_deliveries:
            cause = self._errors.get(entry_id, "the consumer died on it")
            reason = f"delivered {delivered} times, never applied ({cause})"
            self._quarantine_entry(entries[0], reason)
            return []
        return entries

    def _quarantine_entry(self, entry: Entry, reason: str) -> None:
        """Quarantine one entry with `reason` and acknowledge it (`result="failed"`)."""
        entry_id, fields = entry
        text = fields.get(FIELD)
        try:
            item = json.loads(text) if text is not None else fields
        except ValueError:
            item = text
        event_id = item.get("event_id") if isinstance(item, dict) else None
        rejected = RejectedEvent(
            index=0,
            event_id=event_id if isinstance(event_id, str) else None,
            fields=["<event>"],
            reason=reason,
        )
        quarantine_rejected(self.sink.layout, [item], [rejected], self.sink.source)
        self.client.xack(self.cfg.stream, self.cfg.group, entry_id)
        self._errors.pop(entry_id, None)
        self.metrics.acked.inc()
        self.metrics.events.labels(result="failed").inc()
        self.stats.add("failed", 1)
        self.stats.entries += 1
        log.warning("entry %s quarantined: %s", entry_id, reason)

    def _account(self, result: BatchResult) -> None:
        m = self.metrics
        counts = {"rejected": len(result.rejected)}
        if result.applied is not None:
            counts |= {
                "accepted": len(result.applied.result.accepted),
                "duplicate": len(result.applied.duplicates),
                "late": len(result.applied.result.late),
            }
        for name, n in counts.items():
            if n:
                m.events.labels(result=name).inc(n)
            self.stats.add(name, n)
        for entry_id in result.ids:
            m.event_to_state.observe(max(result.stored_at - _entry_ms(entry_id), 0.0))

    def refresh_lag(self, force: bool = False) -> None:
        """Lag and pending of the group (XINFO GROUPS), and the recent ack rate."""
        now = time.monotonic()
        if not force and now < self._next_lag:
            return
        self._next_lag = now + self.cfg.lag_every_s
        for info in self.client.xinfo_groups(self.cfg.stream):
            if info["name"] == self.cfg.group:
                self.metrics.pending.set(info["pending"])
                if info.get("lag") is not None:  # unknown after some deletions
                    self.metrics.lag.set(info["lag"])
        then, acked = self._acked_at_lag
        if now > then:
            self.metrics.events_per_second.set((self.stats.entries - acked) / (now - then))
        self._acked_at_lag = (now, self.stats.entries)

    def step(self) -> int:
        """Read (or claim) one batch, apply it, acknowledge it; the number of entries."""
        entries, self._retry = self._retry or self._read(), None
        if not entries:
            self.refresh_lag()
            return 0
        started = time.perf_counter()
        try:
            result = handle_batch(self.sink, entries, time.time())
        except _TRANSIENT:
            self._retry = entries  # an outage: the same batch again, no redelivery counted
            raise
        except Exception as exc:
            self.metrics.failures.inc()
            self.stats.failures += 1
            if len(entries) == 1:
                self._errors[entries[0][0]] = f"last error {type(exc).__name__}: {exc}"
            # read the batch again from this consumer's pending list, one entry at a time
            self._own_pending = True
            raise
        for entry_id in result.ids:
            self._errors.pop(entry_id, None)
        self._account(result)  # stored: counted even if the ack is lost (redelivery: duplicate)
        if self.before_ack is not None:
            self.before_ack(result)
        try:
            self.client.xack(self.cfg.stream, self.cfg.group, *result.ids)
        except _TRANSIENT:
            self._retry = entries  # stored already: the retry finds them duplicates, then acks
            raise
        self.metrics.acked.inc(len(result.ids))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.stats.entries += len(entries)
        self.stats.batches += 1
        self.refresh_lag()
        return len(entries)

    def run(self, stop: threading.Event, max_entries: int | None = None) -> RunStats:
        """Batches until `stop` is set (checked between batches: the current one is stored
        and acknowledged first) or `max_entries` were handled."""
        ensure_group(self.client, self.cfg.stream, self.cfg.group)
        while not stop.is_set():
            if max_entries is not None and self.stats.entries >= max_entries:
                break
            try:
                self.step()
            except _TRANSIENT as exc:
                log.warning("unavailable (%s: %s); retrying", type(exc).__name__, exc)
                self._own_pending = True  # a read may have been delivered, never received
                stop.wait(self.cfg.retry_backoff_s)
            except Exception as exc:
                log.warning("batch not applied (%s: %s); retrying", type(exc).__name__, exc)
                stop.wait(self.cfg.retry_backoff_s)
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            self.refresh_lag(force=True)  # the last figures; Redis gone must not fail a stop
        return self.stats
