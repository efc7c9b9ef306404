"""Live session state in Redis, shared by every worker and replica (`backends.sessions.kind:
redis`).

Same semantics as `SqliteSessionStore` - the one `fold` (dedup by event id, fold with
`features.signals.update`, late events, sessions derived by inactivity) - with the state in
Redis so a session updated through one replica is what the others read. A batch is applied
optimistically: WATCH every key the fold reads, fold in Python, write in MULTI/EXEC; when
another writer changed one of those keys in between, EXEC fails and the batch is folded
again from the new state, so two replicas updating one session never lose an event.

Retention is by TTL: each id, session and derived-session actor expires `retention_s` after
its last write (wall clock). The late horizon is still on the events' clock, as in SQLite:
the newest event time lives in one key, and an event older than it minus the retention is
returned late - its id may have expired. Keys are plain (no hash tags): one batch spans
several sessions, so the store needs one Redis primary, not a Cluster.

A Redis error (down, hung past `socket_timeout_s`) raises `SessionStoreUnavailable` - the
server answers 503 with Retry-After - never a hang.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence

from features.config import SignalsConfig
from features.signals import SessionState
from serving.sessions import (
    ApplyResult,
    LiveEvent,
    SessionStoreUnavailable,
    check_retention,
    fold,
    live_states,
    state_from_json,
    state_to_json,
)

# One command writes the whole batch (a SET per key from Python cost more than the fold).
# KEYS[1]: the newest event time, KEYS[2..]: ids / actors / sessions to set.
# ARGV[1]: TTL in seconds ('0': none), ARGV[2]: the batch's newest event time ('': none),
# ARGV[3..]: the values of KEYS[2..]. The newest time only ever grows.
_LUA_WRITE = """
local ttl = tonumber(ARGV[1])
for i = 2, #KEYS do
  if ttl > 0 then redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
  else redis.call('SET', KEYS[i], ARGV[i + 1]) end
end
if ARGV[2] ~= '' then
  local cur = redis.call('GET', KEYS[1])
  if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then redis.call('SET', KEYS[1], ARGV[2]) end
end
return 1
"""


class RedisSessionStore:
    """Session states, seen event ids and derived-session actors as Redis keys under `prefix`."""

    def __init__(
        self,
        url: str,
        prefix: str,
        cfg: SignalsConfig,
        gap_s: float,
        retention_s: float | None = None,
        *,
        socket_timeout_s: float = 1.0,
        conflict_retries: int = 50,
    ) -> None:
        import redis

        check_retention(retention_s, gap_s)
        self.cfg = cfg
        self.gap_s = gap_s
        self.retention_s = retention_s
        self.prefix = prefix
        self.conflict_retries = conflict_retries
        self._ttl = None if retention_s is None else max(1, math.ceil(retention_s))
        self._redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self._errors = (redis.RedisError,)
        self._conflict = redis.WatchError

    def key(self, kind: str, name: str) -> str:
        """`<prefix><kind>:<name>`: kind is seen, session, actor or newest."""
        return f"{self.prefix}{kind}:{name}"

    def apply(self, events: Sequence[LiveEvent]) -> ApplyResult:
        if not events:
            return ApplyResult()
        try:
            for attempt in range(self.conflict_retries):
                try:
                    return self._apply_once(events)
                except self._conflict:  # another writer changed a key we read: fold again
                    time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        except self._errors as exc:
            raise SessionStoreUnavailable(f"Redis session store: {exc}") from exc
        raise SessionStoreUnavailable(
            f"Redis session store: {self.conflict_retries} conflicting writers in a row"
        )

    def _apply_once(self, events: Sequence[LiveEvent]) -> ApplyResult:
        seen_keys = {e.event_id: self.key("seen", e.event_id) for e in events}
        session_keys = {self.key("session", e.session_id) for e in events if e.session_id}
        actor_keys = {self.key("actor", e.actor) for e in events if e.session_id is None}
        watched = [*dict.fromkeys(seen_keys.values()), *session_keys, *actor_keys]
        with self._redis.pipeline() as pipe:
            pipe.watch(*watched)
            *values, newest = pipe.mget([*watched, self.key("newest", "ts")])
            cache: dict[str, bytes | None] = dict(zip(watched, values, strict=True))

            def read(key: str) -> bytes | None:
                if key not in cache:  # a derived session first met here: watch it too
                    pipe.watch(key)
                    cache[key] = pipe.get(key)
                return cache[key]

            pending: set[str] = set()

            def mark(event_id: str) -> bool:
                if event_id in pending or cache[seen_keys[event_id]] is not None:
                    return False
                pending.add(event_id)
                return True

            def load(sid: str) -> SessionState | None:
                raw = read(self.key("session", sid))
                return None if raw is None else state_from_json(raw.decode())

            def actor_session(actor: str) -> tuple[str, float] | None:
                raw = read(self.key("actor", actor))
                if raw is None:
                    return None
                sid, ts = json.loads(raw)
                return sid, float(ts)

            newest_ts = -math.inf if newest is None else float(newest)
            horizon = -math.inf if self.retention_s is None else newest_ts - self.retention_s
            result, states, actors = fold(
                events, load, mark, actor_session, self.cfg, self.gap_s, horizon
            )
            by_id = {e.event_id: e for e in events}
            writes = {seen_keys[i]: repr(by_id[i].ts) for i in pending}
            for actor, (sid, ts) in actors.items():
                writes[self.key("actor", actor)] = json.dumps([sid, ts])
            for sid, state in live_states(states):
                writes[self.key("session", sid)] = state_to_json(state)
            latest = max((by_id[i].ts for i in result.accepted), default=None)
            pipe.multi()
            pipe.eval(
                _LUA_WRITE,
                1 + len(writes),
                self.key("newest", "ts"),
                *writes,
                self._ttl or 0,
                "" if latest is None else repr(latest),
                *writes.values(),
            )
            pipe.execute()
        return result

    def get(self, session_id: str) -> SessionState | None:
        try:
            raw = self._redis.get(self.key("session", session_id))
        except self._errors as exc:
            raise SessionStoreUnavailable(f"Redis session store: {exc}") from exc
        return None if raw is None else state_from_json(raw.decode())

    def ping(self) -> None:
        """Raise when Redis does not answer (readiness probe)."""
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
