"""Online feature reads and session pushes for the scoring server.

`OnlineFeatures` resolves the model's FeatureService once (a per-call registry lookup costs
milliseconds) into the stored features it needs per view and the on-demand view's own
function as the registry holds it. Three read paths give the same vector (tested):

- `ONLINE_STORE`: the stored views read straight from the online store, then the on-demand
  function in process - the same `signals.derive()` code Feast would run, without the
  per-feature proto conversions of `get_online_features`. On SQLite all views come back from
  one SQL statement over Feast's own tables (`SqliteTables`: Feast's table names, entity-key
  encoding and value protos; ~4x cheaper than one Feast `online_read` per view, which other
  backends use; `intent bench online`),
- `GET_ONLINE_FEATURES`: `FeatureStore.get_online_features` for the stored features, the
  on-demand function in process; on Redis it reads every view in one pipelined round trip,
  where `ONLINE_STORE` makes one per view,
- `FEAST_ODFV`: `get_online_features(FeatureService)`, Feast running the on-demand view
  (on rows Feast does not TTL-check: for parity tests and comparison only).

The default is the fastest path for the backend (`default_read_path`). `embedded` says
whether a read is local work (SQLite: page cache or disk, no network), which the server may
run inline instead of on a thread with a hard timeout (serving.feature_read).

Stored rows older than their view's TTL read as missing, exactly as the point-in-time join
treats them in training; Feast's online stores do not check TTLs on read
(feast-dev/feast#1802).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.signals import SNAPSHOT_FIELDS
from features.store.definitions import (
    REQUEST_TS,
    SESSION_PUSH,
    SESSION_STATE,
    TIMESTAMP_FIELD,
    USER_STATS,
)
from features.store.repo import (
    ServicePlan,
    check_registry_matches,
    package_definitions,
    package_plan,
    resolve_service,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from core.layout import Layout

log = logging.getLogger(__name__)

Value = float | int | str | bool | None

# Columns of Feast's SQLite online tables that `SqliteTables` reads.
_SQLITE_COLUMNS = frozenset({"entity_key", "feature_name", "value", "event_ts"})
# A serialized Value proto holding only `double_val` (field 5, wire type 1): this tag byte,
# then the 8-byte little-endian double - nine bytes in all.
_DOUBLE_TAG = 0x29
_unpack_double = struct.Struct("<d").unpack_from
_SCALAR_TYPES = frozenset({int, float, str, bool, type(None)})


class OnlineStoreGone(OSError):
    """The online store's file was deleted or replaced under a running server: reads would
    come from the unlinked old file (stale data) - restart after `intent features apply`."""


@dataclass(frozen=True)
class FeatureVector:
    """One decision's features in the service's order, plus what the store knew.

    `values` uses None for every missing value (no row, expired row, not observed), so the
    model and the rules see one notion of "unknown". `user_known` is False for a cold-start
    user (no live `user_stats` row); `session_known` likewise for the session state.
    """

    values: dict[str, Value]
    user_known: bool
    session_known: bool


class ReadPath(StrEnum):
    """How `OnlineFeatures.read` reaches the online store (see the module docstring)."""

    ONLINE_STORE = "online_store"
    GET_ONLINE_FEATURES = "get_online_features"
    FEAST_ODFV = "feast_odfv"


def default_read_path(online_store_type: str) -> ReadPath:
    """The server's path: one SQL statement on embedded SQLite, one pipelined batch on Redis."""
    return ReadPath.ONLINE_STORE if online_store_type == "sqlite" else ReadPath.GET_ONLINE_FEATURES


class OnlineFeatures:
    """Reads one decision's feature vector and pushes live session state.

    Build it once per process: it holds the resolved FeatureService, the view objects and
    an online-store connection. `lock_timeout_s` bounds how long a SQLite read waits for a
    writer's lock before it fails (None: SQLite's usual 5 s); `sqlite_direct=False` reads
    SQLite through Feast's per-view `online_read` instead of `SqliteTables`.
    """

    def __init__(
        self,
        store: FeatureStore,
        service_name: str,
        path: ReadPath | None = None,
        *,
        lock_timeout_s: float | None = None,
        sqlite_direct: bool = True,
        plan: ServicePlan | None = None,
        views: Mapping[str, Any] | None = None,
    ):
        """`plan` / `views`: the package's (`from_package`), else resolved from the registry."""
        from feast.infra.provider import get_provider
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        self.store = store
        self.service = store.get_feature_service(service_name)
        self.plan = plan if plan is not None else resolve_service(store, self.service)
        get_view = views.__getitem__ if views is not None else store.get_feature_view
        self.path = ReadPath(path or default_read_path(store.config.online_store.type))
        self.embedded = store.config.online_store.type == "sqlite"
        self.feature_names = list(self.plan.feature_names)
        self._provider = get_provider(store.config)
        self._views = [
            (get_view(view), self.plan.join_keys[view], list(names), ttl)
            for view, names in self.plan.stored.items()
            for ttl in [self.plan.ttl_s[view]]
        ]
        self._double = lambda value: ValueProto(double_val=value)
        self._session_view = get_view(SESSION_STATE)
        for view in (USER_STATS, SESSION_STATE):
            if not self.plan.stored.get(view):
                raise ValueError(
                    f"feature service {service_name!r} reads no {view} feature; "
                    "cold-start detection needs one"
                )
        self._refs = [f"{v}:{f}" for v, names in self.plan.stored.items() for f in names]
        self._ttl_by_feature = {
            f: self.plan.ttl_s[v] for v, names in self.plan.stored.items() for f in names
        }
        self._user_probe = self.plan.stored[USER_STATS][0]
        self._session_probe = self.plan.stored[SESSION_STATE][0]
        self._found = frozenset({FieldStatus.PRESENT, FieldStatus.NULL_VALUE})
        self.tables: SqliteTables | None = None
        if self.path is ReadPath.ONLINE_STORE and self.embedded and sqlite_direct:
            try:
                self.tables = SqliteTables(store, self._views, lock_timeout_s)
            except (sqlite3.Error, ValueError) as exc:  # not applied yet, another layout
                log.warning("online reads through Feast's online_read: %s", exc)

    @classmethod
    def from_package(
        cls, store: FeatureStore, layout: Layout, service_name: str, **kwargs: Any
    ) -> OnlineFeatures:
        """The server's reader: feature logic from the installed package, never from code
        stored in the registry (`feast_store.package_plan`); the registry must list the same
        features (`check_registry_matches`)."""
        from core.settings import load_config
        from features.config import SignalsConfig
        from features.store.config import FeatureStoreConfig

        cfg = load_config(FeatureStoreConfig, layout=layout)
        online_path = getattr(store.config.online_store, "path", None)
        if store.config.online_store.type == "sqlite" and not Path(online_path).is_file():
            raise OnlineStoreGone(
                f"online store {online_path} is missing: run `intent features apply` and "
                "`intent features materialize`, then restart"
            )
        signals_json = load_config(SignalsConfig, layout=layout).model_dump_json()
        defs = package_definitions(layout, cfg)
        plan = package_plan(defs, service_name, signals_json)
        check_registry_matches(store, plan, service_name)
        views = {v.name: v for v in (defs.user_stats, defs.step_stats, defs.session_state)}
        return cls(store, service_name, plan=plan, views=views, **kwargs)

    def check(self) -> None:
        """Raise when the online store cannot serve reads (readiness probe): the SQLite file
        deleted or replaced, or Redis not answering."""
        if self.tables is not None:
            self.tables.check()
            return
        if self.embedded:
            path = Path(self.store.config.online_store.path)
            if not path.is_file():
                raise OnlineStoreGone(f"online store file {path} is missing")
            return
        online_store = self._provider.online_store
        get_client = getattr(online_store, "_get_client", None)
        if get_client is not None:
            get_client(self.store.config.online_store).ping()

    def read(self, user_id: str, session_id: str, step: str, now_epoch: float) -> FeatureVector:
        """The service's features for one decision at `now_epoch` (epoch seconds)."""
        entity: dict[str, Any] = {"user_id": user_id, "session_id": session_id, "step": step}
        if self.tables is not None:
            values, present = self.tables.read(entity, now_epoch)
        elif self.path is ReadPath.ONLINE_STORE:
            values, present = self._read_views(entity, now_epoch)
        elif self.path is ReadPath.GET_ONLINE_FEATURES:
            response = self.store.get_online_features(features=self._refs, entity_rows=[entity])
            values, present = self._unpack(response.proto, now_epoch)
        else:
            entity[REQUEST_TS] = now_epoch
            response = self.store.get_online_features(features=self.service, entity_rows=[entity])
            values, present = self._unpack(response.proto, now_epoch)
        if self.path is not ReadPath.FEAST_ODFV:
            for function, inputs in self.plan.on_demand:
                columns: dict[str, list[Any]] = {n: [values.get(n)] for n in inputs}
                columns[REQUEST_TS] = [now_epoch]
                values.update({k: v[0] for k, v in function(columns).items()})
        get = values.get
        return FeatureVector(  # NaN -> None (`value != value` only for NaN)
            values={n: None if (v := get(n)) != v else v for n in self.feature_names},
            user_known=present[self._user_probe],
            session_known=present[self._session_probe],
        )

    def close(self) -> None:
        """Close the SQLite connection of `tables` (Feast's own connections stay Feast's)."""
        if self.tables is not None:
            self.tables.close()

    def _read_views(
        self, entity: dict[str, str], now_epoch: float
    ) -> tuple[dict[str, Any], dict[str, bool]]:
        """One online-store read per view; rows past their view's TTL count as absent."""
        values: dict[str, Any] = {}
        present: dict[str, bool] = {}
        for view, key, names, ttl in self._views:
            [(ts, row)] = self._provider.online_read(
                config=self.store.config,
                table=view,
                entity_keys=[_entity_key(key, entity[key])],
                requested_features=names,
            )
            found = row is not None and _fresh(ts.timestamp(), ttl, now_epoch)
            for name in names:
                present[name] = found
                values[name] = _proto_value(row[name]) if found and name in row else None
        return values, present

    def _unpack(self, proto: Any, now_epoch: float) -> tuple[dict[str, Any], dict[str, bool]]:
        """Values and presence by feature name; rows past their view's TTL count as absent."""
        values: dict[str, Any] = {}
        present: dict[str, bool] = {}
        for name, result in zip(proto.metadata.feature_names.val, proto.results, strict=True):
            found = result.statuses[0] in self._found and _fresh(
                result.event_timestamps[0].seconds, self._ttl_by_feature.get(name), now_epoch
            )
            present[name] = found
            values[name] = _proto_value(result.values[0]) if found else None
        return values, present

    def push_session(
        self,
        session_id: str,
        snapshot: Mapping[str, float],
        ts: datetime,
        *,
        via_push_source: bool = False,
    ) -> None:
        """Write a session's live state (`signals.snapshot`) to the online store.

        The row goes straight to the online store's writer, where Feast's own push ends up;
        `via_push_source=True` calls `FeatureStore.push(PushMode.ONLINE)` on
        `session_state_push` instead, which re-reads the registry on every call (tens of
        ms). Raises ValueError naming missing or unknown fields: a partial row would
        silently blank the fields it lacks.
        """
        missing = [f for f in SNAPSHOT_FIELDS if f not in snapshot]
        unknown = sorted(set(snapshot) - set(SNAPSHOT_FIELDS))
        if missing or unknown:
            raise ValueError(
                f"session snapshot: missing fields {missing or '-'}; "
                f"unknown fields {unknown or '-'}"
            )
        if ts.tzinfo is None:
            raise ValueError("session snapshot: ts must be timezone-aware (UTC)")
        ts = ts.astimezone(UTC)
        if not via_push_source:
            row = {f: self._double(float(snapshot[f])) for f in SNAPSHOT_FIELDS}
            key = _entity_key("session_id", session_id)
            self._provider.online_write_batch(
                config=self.store.config,
                table=self._session_view,
                data=[(key, row, ts, None)],
                progress=None,
            )
            return
        from feast.data_source import PushMode

        frame = {"session_id": session_id, TIMESTAMP_FIELD: ts}
        frame.update({f: float(snapshot[f]) for f in SNAPSHOT_FIELDS})
        self.store.push(SESSION_PUSH, pd.DataFrame([frame]), to=PushMode.ONLINE)


class SqliteTables:
    """Every stored view of a decision from Feast's SQLite online store in one statement.

    Feast's `online_read` runs one query per view through a connection that parses each
    timestamp into a datetime; here one `UNION ALL` over the same tables (Feast's table names
    and entity-key encoding, its value protos) returns all views at once, as one consistent
    snapshot. The result equals Feast's own reads (tested against `get_online_features`).

    The database is switched to WAL on open (persistent; Feast's writers work unchanged), so
    a read never waits for a writer - a session push or a materialization - and a writer
    never waits for reads. Where that fails (a writer holds the lock) a read may wait up to
    `lock_timeout_s` for a writer, then fails.
    """

    def __init__(
        self,
        store: FeatureStore,
        views: Sequence[tuple[Any, str, list[str], float | None]],
        lock_timeout_s: float | None,
    ) -> None:
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        config = store.config
        self.path = SqliteOnlineStore._get_db_path(config)
        versioned = config.registry.enable_online_feature_view_versioning
        tables = [compute_table_id(config.project, view, versioned) for view, *_ in views]
        self._keys = [key for _, key, _, _ in views]
        self._views = [(names, ttl) for _, _, names, ttl in views]
        self._wanted = frozenset(name for names, _ in self._views for name in names)
        self._blank: dict[str, Value] = dict.fromkeys(self._wanted)
        # per view: its TTL, and its names flagged present, flagged absent, blanked
        self._view_dicts = [
            (ttl, dict.fromkeys(names, True), dict.fromkeys(names, False), dict.fromkeys(names))
            for names, ttl in self._views
        ]
        self._version = config.entity_key_serialization_version
        self._decode = ValueDecoder().decode
        timeout = 5.0 if lock_timeout_s is None else lock_timeout_s
        uri = Path(self.path).resolve().as_uri() + "?mode=rw"  # never create an empty file
        self._con = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
        self._identity = _file_identity(self.path)
        self._lock = threading.Lock()
        try:
            for table in tables:
                columns = {r[1] for r in self._con.execute(f'PRAGMA table_info("{table}")')}
                if not columns:
                    raise ValueError(f"{self.path}: no table {table} (run `intent features apply`)")
                if missing := _SQLITE_COLUMNS - columns:
                    raise ValueError(f"{table}: not Feast's SQLite layout, no {sorted(missing)}")
            self.journal_mode = _use_wal(self._con)
        except BaseException:
            self._con.close()
            raise
        self._sql = " UNION ALL ".join(
            f'SELECT {i}, feature_name, value, event_ts FROM "{t}" WHERE entity_key = ?'
            for i, t in enumerate(tables)
        )

    def read(
        self, entity: Mapping[str, str], now_epoch: float
    ) -> tuple[dict[str, Any], dict[str, bool]]:
        """Values and presence by feature name; rows past their view's TTL count as absent.

        One pass over the rows decodes each value (`ValueDecoder`: a double straight from
        its eight bytes) and keeps each view's newest timestamp; a stale view is blanked after.
        """
        self.check_file()
        keys = [_entity_key_bytes(k, entity[k], self._version) for k in self._keys]
        with self._lock:
            rows = self._con.execute(self._sql, keys).fetchall()
        values = self._blank.copy()  # feature names are unique across views
        newest: list[int | None] = [None] * len(self._views)
        wanted, decode = self._wanted, self._decode
        for view, name, blob, ts in rows:
            if name in wanted:
                values[name] = decode(blob)
            if (last := newest[view]) is None or ts > last:
                newest[view] = ts
        present: dict[str, bool] = {}
        for (ttl, found_flags, absent_flags, blank), ts in zip(
            self._view_dicts, newest, strict=True
        ):
            found = ts is not None and _fresh(_feast_epoch(ts), ttl, now_epoch)
            present.update(found_flags if found else absent_flags)
            if not found and ts is not None:  # rows past the TTL: missing
                values.update(blank)
        return values, present

    def check_file(self) -> None:
        """Raise OnlineStoreGone when the file opened at start is no longer at its path.

        An open SQLite connection keeps reading a deleted file's inode: without this check a
        deleted store silently served its old rows until the next restart.
        """
        try:
            now = _file_identity(self.path)
        except FileNotFoundError:
            raise OnlineStoreGone(f"online store {self.path} was deleted") from None
        if now != self._identity:
            raise OnlineStoreGone(f"online store {self.path} was replaced since start-up")

    def check(self) -> None:
        """`check_file` plus one read of the schema (a lock held elsewhere shows here)."""
        self.check_file()
        with self._lock:
            self._con.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        """Close once no read is running: closing a connection another thread is executing
        on crashes the interpreter (seen as a segfault when a locked store's read was still
        waiting at shutdown). `interrupt()` makes such a read give up first."""
        with contextlib.suppress(sqlite3.ProgrammingError):  # already closed
            self._con.interrupt()
        with self._lock:
            self._con.close()


class ValueDecoder:
    """Feast's stored Value protos as Python values, as `_proto_value(Value.FromString(b))`
    gives them, for less: a read decodes ~54 values. A double (most features) is read
    straight from its eight bytes; any other kind is parsed once per distinct blob and
    remembered when scalar (counts and categories repeat; lists are never shared)."""

    def __init__(self, max_cached: int = 65_536) -> None:
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        self._parse = ValueProto.FromString
        self._scalars: dict[bytes, Value] = {}
        self._max_cached = max_cached

    def decode(self, blob: bytes | None) -> Value:
        if blob is None:  # a NULL value column: missing, as Feast reads it
            return None
        if len(blob) == 9 and blob[0] == _DOUBLE_TAG:
            return _unpack_double(blob, 1)[0]
        try:
            return self._scalars[blob]
        except KeyError:
            pass
        value = _proto_value(self._parse(blob))
        if type(value) in _SCALAR_TYPES and len(self._scalars) < self._max_cached:
            self._scalars[blob] = value
        return value


def _file_identity(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _use_wal(con: sqlite3.Connection) -> str:
    """Switch the database to WAL (readers and writers stop blocking each other)."""
    try:
        return str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0])
    except sqlite3.OperationalError as exc:  # a writer holds the lock right now
        log.warning("online store stays in its journal mode (%s): reads may wait for writers", exc)
        return str(con.execute("PRAGMA journal_mode").fetchone()[0])


def _fresh(row_epoch: float, ttl_s: float | None, now_epoch: float) -> bool:
    """Whether a stored row is within its view's TTL at `now_epoch` (training's rule)."""
    return ttl_s is None or now_epoch - row_epoch <= ttl_s


def _entity_key(join_key: str, value: str) -> Any:
    """Feast's EntityKey proto of a one-column string entity."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    return EntityKey(join_keys=[join_key], entity_values=[ValueProto(string_val=value)])


@functools.lru_cache(maxsize=65_536)
def _entity_key_bytes(join_key: str, value: str, version: int) -> bytes:
    """Feast's key encoding of a one-column string entity (the stored `entity_key`)."""
    from feast.infra.key_encoding_utils import serialize_entity_key

    return serialize_entity_key(
        _entity_key(join_key, value), entity_key_serialization_version=version
    )


def _feast_epoch(stored: int | str) -> float:
    """Epoch seconds of a stored `event_ts`, as Feast's SQLite converter reads it back (it
    stores a naive UTC time through the local-time `timestamp()`, and reverses that)."""
    return datetime.fromtimestamp(int(stored)).replace(tzinfo=UTC).timestamp()


def _proto_value(value: Any) -> Any:
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    return getattr(value, kind)
