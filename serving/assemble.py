"""Build the decision engine and its stores from the config files (the I/O edge).

The server, the benchmarks and the policy evaluation all assemble the engine here, so they
run with the same backends for the same config. `refresh_model` is the hot swap: it asks
the registry for the champion and swaps the runtime only when the version changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.bandit import BanditConfig
from core.bundle import Bundle, BundleError, bundle_dirs, latest_bundle, read_manifest
from core.layout import Layout
from core.policy_config import PolicyConfig
from core.registry import (
    ChampionRef,
    RegistryUnavailable,
    champion_ref,
    choose_model,
    load_champion,
    tracking_uri,
)
from core.settings import load_config
from features.config import EventsConfig, FunnelConfig, SignalsConfig
from serving.bandit import ActionSelector, build_selector
from serving.caps import CapStore, MemoryCapStore, RedisCapStore, SqliteCapStore
from serving.config import (
    BackendsConfig,
    PostgresLog,
    ReadMode,
    RedisSessions,
    RedisStore,
    ServingConfig,
    SqliteCaps,
    SqliteLog,
    SqliteSessions,
)
from serving.decision import Decision, DecisionRequest
from serving.decision_log import DecisionLog, memory_log, postgres_log, sqlite_log
from serving.engine import DecisionEngine, Runtime, new_decision_id
from serving.feature_read import BudgetedReader, open_feast_reader
from serving.health import Status
from serving.sessions import MemorySessionStore, SessionStore, SqliteSessionStore
from serving.sessions_redis import RedisSessionStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Configs:
    """Every config file the serving path reads."""

    serving: ServingConfig
    policy: PolicyConfig
    signals: SignalsConfig
    funnel: FunnelConfig
    events: EventsConfig
    bandit: BanditConfig | None = None  # exploration / learned policy; None: the table only

    @classmethod
    def load(cls, layout: Layout) -> Configs:
        return cls(
            serving=load_config(ServingConfig, layout=layout),
            policy=load_config(PolicyConfig, layout=layout),
            signals=load_config(SignalsConfig, layout=layout),
            funnel=load_config(FunnelConfig, layout=layout),
            events=load_config(EventsConfig, layout=layout),
            bandit=load_config(BanditConfig, layout=layout),
        )


def open_caps(backends: BackendsConfig, policy: PolicyConfig, layout: Layout) -> CapStore:
    store = backends.caps
    if isinstance(store, SqliteCaps):
        return SqliteCapStore(
            layout.serving / store.file,
            policy.caps,
            store.checkpoint_interval_s,
            wal_limit_mb=store.wal_limit_mb,
        )
    if isinstance(store, RedisStore):
        return RedisCapStore(
            store.url, store.prefix, policy.caps, socket_timeout_s=store.socket_timeout_s
        )
    return MemoryCapStore(policy.caps)


def open_log(
    backends: BackendsConfig, layout: Layout, *, housekeeping: bool = False
) -> DecisionLog:
    """The configured log; `housekeeping` (the server) also applies its retention."""
    store = backends.decision_log
    retention_s = None
    if housekeeping and isinstance(store, SqliteLog | PostgresLog) and store.retention_days:
        retention_s = store.retention_days * 86_400.0
    every = backends.housekeeping_interval_s
    if isinstance(store, SqliteLog):
        return sqlite_log(
            layout.serving / store.file,
            synchronous=store.synchronous,
            batch_max=backends.log_batch_max,
            checkpoint_interval_s=store.checkpoint_interval_s,
            wal_limit_mb=store.wal_limit_mb,
            retention_s=retention_s,
            housekeeping_interval_s=every,
        )
    if isinstance(store, PostgresLog):
        return postgres_log(
            store.dsn,
            store.schema_name,
            batch_max=backends.log_batch_max,
            connect_timeout_s=store.connect_timeout_s,
            call_timeout_s=store.call_timeout_s,
            retention_s=retention_s,
            housekeeping_interval_s=every,
        )
    return memory_log()


def open_sessions(
    backends: BackendsConfig, signals: SignalsConfig, events: EventsConfig, layout: Layout
) -> SessionStore:
    gap_s = events.session_gap_minutes * 60.0
    store = backends.sessions
    if isinstance(store, SqliteSessions):
        return SqliteSessionStore(
            layout.serving / store.file, signals, gap_s, store.retention_hours * 3600.0
        )
    if isinstance(store, RedisSessions):
        return RedisSessionStore(
            store.url,
            store.prefix,
            signals,
            gap_s,
            store.retention_hours * 3600.0,
            socket_timeout_s=store.socket_timeout_s,
            conflict_retries=store.conflict_retries,
        )
    return MemorySessionStore(signals, gap_s)


def make_runtime(
    bundle: Bundle | None,
    source: str,
    detail: str,
    cfg: ServingConfig,
    layout: Layout,
    reuse: BudgetedReader | None = None,
) -> Runtime:
    """A runtime for `bundle`, with a reader over the bundle's FeatureService."""
    reader, reader_detail = None, "online_store: none (request signals only)"
    if cfg.features.online_store == "feast":
        service = bundle.manifest.feature_service if bundle is not None else None
        if (
            reuse is not None
            and getattr(reuse.reader, "service", None) is not None
            and (service is None or reuse.reader.service.name == service)
        ):
            reader, reader_detail = reuse, f"feast:{reuse.reader.service.name}"
        else:
            features = cfg.features
            online, reader_detail = open_feast_reader(
                layout, service, lock_timeout_s=features.budget_ms / 1000.0
            )
            if online is not None:
                inline = features.read_mode == ReadMode.AUTO and getattr(online, "embedded", False)
                reader = BudgetedReader(online, features.budget_ms, features.threads, inline=inline)
    return Runtime(bundle, reader, source, detail, reader_detail)  # type: ignore[arg-type]


def open_runtime(cfg: ServingConfig, layout: Layout) -> Runtime:
    """Start-up: choose the model (registry -> bundle -> rules) and open its reader."""
    choice = choose_model(cfg.model, layout)
    return make_runtime(choice.bundle, choice.source, choice.detail, cfg, layout)


def build_engine(
    layout: Layout,
    configs: Configs | None = None,
    *,
    runtime: Runtime | None = None,
    caps: CapStore | None = None,
    decision_log: DecisionLog | None = None,
    sessions: SessionStore | None = None,
    id_factory: Callable[[DecisionRequest], str] = new_decision_id,
    on_decision: Callable[[Decision], None] | None = None,
    selector: ActionSelector | None = None,
) -> DecisionEngine:
    """The engine with the configured backends; pass any part to replace it."""
    configs = configs or Configs.load(layout)
    if selector is None and configs.bandit is not None:
        selector = build_selector(configs.bandit, layout.models)
    backends = configs.serving.backends
    return DecisionEngine(
        configs.policy,
        configs.signals,
        runtime=runtime or open_runtime(configs.serving, layout),
        caps=caps or open_caps(backends, configs.policy, layout),
        log=decision_log or open_log(backends, layout, housekeeping=True),
        budgets=backends.budgets,
        explain=configs.serving.explain,
        cold_start=configs.serving.features.cold_start,
        sessions=sessions
        if sessions is not None
        else open_sessions(backends, configs.signals, configs.events, layout),
        id_factory=id_factory,
        on_decision=on_decision,
        selector=selector,
    )


def refresh_model(engine: DecisionEngine, cfg: ServingConfig, layout: Layout) -> bool:
    """Swap in a newly promoted champion; True when the served model changed.

    A registry outage never takes a working model away: the current runtime stays. Without
    a model (rules-only, or a bundle fallback), a champion - or failing that a newer local
    bundle - replaces it.
    """
    current = engine.runtime
    uri = tracking_uri(cfg.model, layout)
    try:
        ref: ChampionRef | None = champion_ref(uri, cfg.model.registered_model, cfg.model.alias)
    except RegistryUnavailable as exc:
        log.info("model check: registry unavailable (%s)", exc)
        ref = None
    if ref is not None:
        if current.source == "registry" and current.model_version == ref.version:
            return False
        try:
            bundle = load_champion(ref, uri, layout.models)
        except (BundleError, RegistryUnavailable) as exc:
            log.error("champion v%s cannot be served: %s", ref.version, exc)
            engine.health.note("model_reload", Status.DEGRADED, "refused_reload", str(exc))
            return False
        detail = f"{cfg.model.registered_model}@{cfg.model.alias}"
        engine.swap(make_runtime(bundle, "registry", detail, cfg, layout, reuse=current.reader))
        engine.health.clear("model_reload")
        log.info("serving champion v%s", ref.version)
        return True
    if current.source == "registry":
        return False  # keep the champion through a registry outage
    newest = next(iter(bundle_dirs(layout.models)), None)
    if newest is None:
        return False
    try:  # compare versions before paying for an ONNX session
        if read_manifest(newest).model_version == current.model_version:
            return False
    except BundleError as exc:
        log.warning("newest bundle %s is unreadable: %s", newest, exc)
    bundle = latest_bundle(layout.models)
    if bundle is None or bundle.version == current.model_version:
        return False
    detail = f"newest bundle in {layout.models} (registry: no champion)"
    engine.swap(make_runtime(bundle, "bundle", detail, cfg, layout, reuse=current.reader))
    log.info("serving bundle v%s", bundle.version)
    return True
