"""Frequency caps: the guard against over-triggering.

A trigger is allowed when the user's episode has had fewer than `max_per_episode` triggers,
the last trigger is at least `cooldown_s` old, and the user's local calendar day (their time
zone) has had fewer than `max_per_day`; an action may bypass some caps (config) but is still
counted. Acquiring a slot is atomic - check and count in one step - so two workers racing for
the last slot of the day cannot both win:

- `SqliteCapStore` (embedded default): one `BEGIN IMMEDIATE` transaction per acquire, so it
  is atomic across threads *and* processes sharing the file.
- `RedisCapStore` (multi-worker / multi-replica): one Lua script per acquire (Redis runs a
  script without interleaving other commands).
- `MemoryCapStore`: one process (simulation, tests).

`judge` is the one definition of the rules; the Lua script mirrors it and the tests run the
same cases against every backend.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from core.policy_config import CapKind, CapsConfig
from core.vocabulary import ActionType
from serving.sqlite_wal import WalCheckpointer, connect_wal, manual_checkpoints, wal_file

# Keys / rows only need to outlive one local day (at most 25 h) and one episode.
_KEY_TTL_S = 2 * 86_400


@dataclass(frozen=True, slots=True)
class CapRequest:
    user_id: str
    session_id: str
    episode: str
    action: ActionType
    now: float  # epoch seconds
    tz: str  # IANA name, already validated


@dataclass(frozen=True, slots=True)
class CapVerdict:
    allowed: bool
    reason: CapKind | None = None  # the cap that suppressed the trigger
    previous_last: float | None = None  # the user's last trigger before this one (release)

    @property
    def detail(self) -> str | None:
        return None if self.reason is None else f"suppressed by the {self.reason} cap"


ALLOWED = CapVerdict(True)


@dataclass(frozen=True, slots=True)
class CapState:
    day_count: int
    episode_count: int
    last_trigger: float | None


@lru_cache(maxsize=1024)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def local_day(now: float, tz: str) -> str:
    """The user's calendar day (ISO date) at `now` in their time zone."""
    return datetime.fromtimestamp(now, _zone(tz)).date().isoformat()


def bypassed(action: ActionType, cfg: CapsConfig) -> frozenset[CapKind]:
    override = cfg.actions.get(action)
    return frozenset(override.bypass) if override else frozenset()


def judge(state: CapState, req: CapRequest, cfg: CapsConfig) -> CapVerdict:
    """Allow or suppress (checked in order: episode, cooldown, daily)."""
    skip = bypassed(req.action, cfg)
    if CapKind.EPISODE not in skip and state.episode_count >= cfg.max_per_episode:
        return CapVerdict(False, CapKind.EPISODE)
    if (
        CapKind.COOLDOWN not in skip
        and state.last_trigger is not None
        and req.now - state.last_trigger < cfg.cooldown_s
    ):
        return CapVerdict(False, CapKind.COOLDOWN)
    if CapKind.DAILY not in skip and state.day_count >= cfg.max_per_day:
        return CapVerdict(False, CapKind.DAILY)
    return ALLOWED


class CapStore(Protocol):
    """Atomically check the caps for a would-be trigger and count it when allowed.

    `release` gives back a slot `acquire` allowed when the trigger is not shown after all
    (the decision could not be logged and was answered 503): the day and episode counts go
    down by one and the last-trigger clock returns to its previous value.
    """

    def acquire(self, req: CapRequest) -> CapVerdict: ...

    def release(self, req: CapRequest, verdict: CapVerdict) -> None: ...

    def close(self) -> None: ...


class MemoryCapStore:
    """Caps in a dict: one process only (simulations, tests)."""

    blocking = False  # no I/O: the engine calls it inline, no thread hop

    def __init__(self, cfg: CapsConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._days: dict[tuple[str, str], int] = {}
        self._episodes: dict[tuple[str, str, str], int] = {}
        self._last: dict[str, float] = {}

    def acquire(self, req: CapRequest) -> CapVerdict:
        day_key = (req.user_id, local_day(req.now, req.tz))
        ep_key = (req.user_id, req.session_id, req.episode)
        with self._lock:
            state = CapState(
                self._days.get(day_key, 0),
                self._episodes.get(ep_key, 0),
                self._last.get(req.user_id),
            )
            verdict = judge(state, req, self.cfg)
            if verdict.allowed:
                self._days[day_key] = state.day_count + 1
                self._episodes[ep_key] = state.episode_count + 1
                self._last[req.user_id] = max(req.now, state.last_trigger or req.now)
                return CapVerdict(True, previous_last=state.last_trigger)
            return verdict

    def release(self, req: CapRequest, verdict: CapVerdict) -> None:
        if not verdict.allowed:
            return
        day_key = (req.user_id, local_day(req.now, req.tz))
        ep_key = (req.user_id, req.session_id, req.episode)
        with self._lock:
            self._days[day_key] = max(0, self._days.get(day_key, 0) - 1)
            self._episodes[ep_key] = max(0, self._episodes.get(ep_key, 0) - 1)
            if self._last.get(req.user_id) == req.now:
                if verdict.previous_last is None:
                    self._last.pop(req.user_id, None)
                else:
                    self._last[req.user_id] = verdict.previous_last

    def close(self) -> None:
        return None


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS cap_days (
    user_id TEXT NOT NULL, day TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cap_episodes (
    user_id TEXT NOT NULL, session_id TEXT NOT NULL, episode TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (user_id, session_id, episode)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cap_last (
    user_id TEXT PRIMARY KEY, ts REAL NOT NULL) WITHOUT ROWID;
"""


# The user's three counters in one statement (one round trip into SQLite, not three).
_SQLITE_STATE = """
SELECT coalesce((SELECT n FROM cap_days WHERE user_id = ?1 AND day = ?2), 0),
       coalesce((SELECT n FROM cap_episodes
                 WHERE user_id = ?1 AND session_id = ?3 AND episode = ?4), 0),
       (SELECT ts FROM cap_last WHERE user_id = ?1)
"""


class SqliteCapStore:
    """Caps in a SQLite file (WAL); atomic across threads and processes via BEGIN IMMEDIATE.

    synchronous=NORMAL: a power cut may forget the last few counts (a user could get one
    extra trigger), which is the right trade for a check on the request path. With
    `checkpoint_interval_s` > 0 WAL checkpoints run on a thread of their own
    (`serving.sqlite_wal`) instead of inside an acquire on the event loop; 0 leaves them
    to SQLite.
    """

    def __init__(
        self,
        path: Path,
        cfg: CapsConfig,
        checkpoint_interval_s: float = 0,
        *,
        wal_limit_mb: float | None = None,
        lock_timeout_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wal_limit_mb = wal_limit_mb
        self._lock_timeout_s = lock_timeout_s
        self._con = self._connect()
        self._con.executescript(_SQLITE_SCHEMA)
        self._lock = threading.Lock()  # one transaction at a time on the connection
        self._checkpointer: WalCheckpointer | None = None
        if checkpoint_interval_s > 0:
            manual_checkpoints(self._con)
            self._checkpointer = WalCheckpointer(
                self._connect,
                checkpoint_interval_s,
                "caps-checkpoint",
                wal_path=wal_file(self.path),
                wal_limit_mb=wal_limit_mb,
                writer_lock=self._lock,
            )

    def _connect(self) -> sqlite3.Connection:
        return connect_wal(
            self.path, "normal", timeout_s=self._lock_timeout_s, wal_limit_mb=self._wal_limit_mb
        )

    def acquire(self, req: CapRequest) -> CapVerdict:
        day = local_day(req.now, req.tz)
        con = self._con
        with self._lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                day_count, ep_count, last = con.execute(
                    _SQLITE_STATE, (req.user_id, day, req.session_id, req.episode)
                ).fetchone()
                verdict = judge(CapState(day_count, ep_count, last), req, self.cfg)
                if verdict.allowed:
                    if day_count == 0:  # first trigger of a new day: forget older days
                        con.execute(
                            "DELETE FROM cap_days WHERE user_id = ? AND day <> ?",
                            (req.user_id, day),
                        )
                    con.execute(
                        "INSERT INTO cap_days VALUES (?, ?, 1) ON CONFLICT (user_id, day) "
                        "DO UPDATE SET n = n + 1",
                        (req.user_id, day),
                    )
                    con.execute(
                        "INSERT INTO cap_episodes VALUES (?, ?, ?, 1) "
                        "ON CONFLICT (user_id, session_id, episode) DO UPDATE SET n = n + 1",
                        (req.user_id, req.session_id, req.episode),
                    )
                    con.execute(
                        "INSERT INTO cap_last VALUES (?, ?) ON CONFLICT (user_id) "
                        "DO UPDATE SET ts = max(ts, excluded.ts)",
                        (req.user_id, req.now),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return CapVerdict(True, previous_last=last) if verdict.allowed else verdict

    def release(self, req: CapRequest, verdict: CapVerdict) -> None:
        if not verdict.allowed:
            return
        day = local_day(req.now, req.tz)
        con = self._con
        with self._lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(
                    "UPDATE cap_days SET n = max(n - 1, 0) WHERE user_id = ? AND day = ?",
                    (req.user_id, day),
                )
                con.execute(
                    "UPDATE cap_episodes SET n = max(n - 1, 0) "
                    "WHERE user_id = ? AND session_id = ? AND episode = ?",
                    (req.user_id, req.session_id, req.episode),
                )
                if verdict.previous_last is None:
                    con.execute(
                        "DELETE FROM cap_last WHERE user_id = ? AND ts = ?",
                        (req.user_id, req.now),
                    )
                else:
                    con.execute(
                        "UPDATE cap_last SET ts = ? WHERE user_id = ? AND ts = ?",
                        (verdict.previous_last, req.user_id, req.now),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._con.close()


# KEYS: day, episode, last. ARGV: max_day, max_episode, cooldown_s, now, bypass_daily,
# bypass_episode, bypass_cooldown, ttl. Mirrors `judge` (order: episode, cooldown, daily).
_LUA_ACQUIRE = """
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local ep = tonumber(redis.call('GET', KEYS[2]) or '0')
local last = redis.call('GET', KEYS[3])
local now = tonumber(ARGV[4])
if ARGV[6] == '0' and ep >= tonumber(ARGV[2]) then return 'episode' end
if ARGV[7] == '0' and last and (now - tonumber(last)) < tonumber(ARGV[3]) then
  return 'cooldown'
end
if ARGV[5] == '0' and day >= tonumber(ARGV[1]) then return 'daily' end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[8])
if (not last) or tonumber(last) < now then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[8])
end
return 'ok:' .. (last or '')
"""

# KEYS: day, episode, last. ARGV: now (as acquire stored it), previous last ('' = none), ttl.
_LUA_RELEASE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
if redis.call('GET', KEYS[3]) == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[3])
  else redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3]) end
end
return 'ok'
"""


class RedisCapStore:
    """Caps in Redis for several workers / replicas; one atomic Lua script per acquire.

    Keys share the hash tag `{user}` so they live on one slot of a Redis Cluster.
    """

    def __init__(
        self, url: str, prefix: str, cfg: CapsConfig, *, socket_timeout_s: float = 1.0
    ) -> None:
        import redis

        self.cfg = cfg
        self.prefix = prefix
        self._redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self._script = self._redis.register_script(_LUA_ACQUIRE)
        self._release = self._redis.register_script(_LUA_RELEASE)

    def keys(self, req: CapRequest) -> list[str]:
        tag = f"{self.prefix}{{{req.user_id}}}"
        return [
            f"{tag}:day:{local_day(req.now, req.tz)}",
            f"{tag}:ep:{req.session_id}:{req.episode}",
            f"{tag}:last",
        ]

    def acquire(self, req: CapRequest) -> CapVerdict:
        skip = bypassed(req.action, self.cfg)
        flag = {kind: "1" if kind in skip else "0" for kind in CapKind}
        result = self._script(
            keys=self.keys(req),
            args=[
                self.cfg.max_per_day,
                self.cfg.max_per_episode,
                repr(float(self.cfg.cooldown_s)),
                repr(float(req.now)),
                flag[CapKind.DAILY],
                flag[CapKind.EPISODE],
                flag[CapKind.COOLDOWN],
                _KEY_TTL_S,
            ],
        )
        result = result.decode() if isinstance(result, bytes) else str(result)
        if result.startswith("ok:"):
            previous = result[3:]
            return CapVerdict(True, previous_last=float(previous) if previous else None)
        return CapVerdict(False, CapKind(result))

    def release(self, req: CapRequest, verdict: CapVerdict) -> None:
        if not verdict.allowed:
            return
        previous = "" if verdict.previous_last is None else repr(float(verdict.previous_last))
        self._release(keys=self.keys(req), args=[repr(float(req.now)), previous, _KEY_TTL_S])

    def ping(self) -> None:
        """Raise when Redis does not answer (readiness probe)."""
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
