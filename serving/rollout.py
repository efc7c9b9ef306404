"""Shadow and canary challengers: a second registered model next to the champion.

The challenger is `models:/<registered_model>@<rollout alias>` (default `challenger`),
loaded like the champion (`core.registry`) and refreshed by the same poller.

- Shadow: after a model decision is committed, the other model (the challenger for champion
  decisions, the champion for canary ones) scores the same feature row on a thread of its
  own; the score and its version are written onto the decision's row (`shadow_score`,
  `shadow_version`). Nothing on the response path waits for it: a shadow later than
  `budget_ms`, failing, or queued past `max_pending` is dropped and counted in
  `intent_shadow_scores{result}`; the action is never touched.
- Canary: users with `bucket(salt, user) < share` (own salt, sticky; holdout users never)
  are served by the challenger; every non-holdout decision carries the arm
  `canary=challenger` or `canary=champion`. The guard counts the canary's decisions and,
  past `guard.min_decisions`, sets the share to 0 when its fallback or error rate crosses the
  configured threshold (gauge `intent_canary_share`, counter `intent_canary_rollbacks`, one
  warning line saying why). A new challenger version starts over at the configured share.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from core.layout import Layout
from core.registry import RegistryUnavailable, champion_ref, load_champion, tracking_uri
from core.vocabulary import Source
from serving.config import CanaryGuard, RolloutConfig, ServingConfig
from serving.decision import Decision, FallbackReason
from serving.decision_log import DecisionLog
from serving.drift import served_row
from serving.engine import Runtime
from serving.experiments import bucket
from serving.log_limit import LimitedLog

log = logging.getLogger(__name__)
_LIMITED = LimitedLog(log)

CHAMPION, CHALLENGER = "champion", "challenger"
CANARY_EXPERIMENT = "canary"  # arm label `canary=<role>`


@dataclass(frozen=True)
class RolloutMetrics:
    shadow: Any  # Counter{result}: ok, timeout, error, dropped, write_error
    canary_share: Any  # Gauge: the live canary share (0 after a rollback)
    rollbacks: Any  # Counter{reason}: fallback_rate, error_rate


@cache
def rollout_metrics() -> RolloutMetrics:
    """In the engine's metrics registry (created on first use, never at import)."""
    from prometheus_client import Counter, Gauge

    from serving.metrics import engine_metrics

    reg = engine_metrics().registry
    return RolloutMetrics(
        shadow=Counter(
            "intent_shadow_scores", "Shadow scores, by result", ["result"], registry=reg
        ),
        canary_share=Gauge(
            "intent_canary_share",
            "Share of users served by the challenger (0 after a rollback)",
            registry=reg,
            multiprocess_mode="livemax",
        ),
        rollbacks=Counter(
            "intent_canary_rollbacks",
            "Automatic canary rollbacks, by reason",
            ["reason"],
            registry=reg,
        ),
    )


def guard_verdict(decisions: int, fallbacks: int, errors: int, cfg: CanaryGuard) -> str | None:
    """Why the canary must roll back (`error_rate` / `fallback_rate`), None while it may run."""
    if decisions < cfg.min_decisions:
        return None
    if errors / decisions > cfg.max_error_rate:
        return "error_rate"
    if fallbacks / decisions > cfg.max_fallback_rate:
        return "fallback_rate"
    return None


class Rollout:
    """The challenger runtime, the live canary share and its guard, the shadow scorer."""

    def __init__(
        self,
        cfg: RolloutConfig,
        log_: DecisionLog,
        champion: Callable[[], Runtime],
        metrics: RolloutMetrics | None = None,
    ) -> None:
        """`champion`: the runtime serving now (e.g. `lambda: engine.runtime`)."""
        self.cfg = cfg
        self.log = log_
        self.champion = champion
        self.metrics = metrics or rollout_metrics()
        self.challenger: Runtime | None = None
        self.share = 0.0
        self.rollback_reason: str | None = None
        self._lock = threading.Lock()
        self._counts = [0, 0, 0]  # canary decisions, counted fallbacks, model errors
        self._pending = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # --- the challenger -----------------------------------------------------------------
    def set_challenger(self, runtime: Runtime | None) -> None:
        """Serve `runtime` as the challenger (None: none); a new version resets the canary."""
        old = self.challenger
        self.challenger = replace(runtime, role=CHALLENGER) if runtime is not None else None
        new_version = runtime.model_version if runtime is not None else None
        if old is None or old.model_version != new_version:
            with self._lock:
                self._counts = [0, 0, 0]
            self.rollback_reason = None
            self.share = self.cfg.canary.share if self.cfg.canary.enabled and runtime else 0.0
            self.metrics.canary_share.set(self.share)
        stale = old.reader if old is not None else None
        keep = (self.champion().reader, runtime.reader if runtime is not None else None)
        if stale is not None and all(stale is not r for r in keep):  # its own feature service
            stale.close()

    # --- the canary ---------------------------------------------------------------------
    def runtime_for(self, user_id: str, champion: Runtime, holdout: bool) -> Runtime:
        challenger = self.challenger
        if challenger is None or holdout or self.share <= 0.0:
            return champion
        if bucket(self.cfg.canary.salt, user_id) < self.share:
            return challenger
        return champion

    def arm_label(self, label: str | None, holdout: bool, rt: Runtime) -> str | None:
        """`label` plus `canary=<role>` while a canary runs (holdout users: unchanged)."""
        if holdout or not self.cfg.canary.enabled or self.challenger is None:
            return label
        part = f"{CANARY_EXPERIMENT}={rt.role}"
        return f"{label},{part}" if label else part

    def _guard(self, d: Decision) -> None:
        guard = self.cfg.canary.guard
        reason = d.fallback_reason
        with self._lock:
            counts = self._counts
            counts[0] += 1
            counts[1] += reason is not None and reason.value not in guard.ignore
            counts[2] += reason == FallbackReason.MODEL_ERROR
            verdict = guard_verdict(*counts, guard) if self.share > 0 else None
            if verdict is None:
                return
            self.share = 0.0
            self.rollback_reason = verdict
            n, fallbacks, errors = counts
        self.metrics.canary_share.set(0.0)
        self.metrics.rollbacks.labels(verdict).inc()
        log.warning(
            "canary rolled back (share 0): challenger v%s %s over %d decisions: %d fallbacks, "
            "%d model errors (limits: fallback %.3f, error %.3f)",
            d.model_version or (self.challenger.model_version if self.challenger else "?"),
            verdict,
            n,
            fallbacks,
            errors,
            guard.max_fallback_rate,
            guard.max_error_rate,
        )

    # --- the shadow ---------------------------------------------------------------------
    def observe(self, d: Decision) -> None:
        """The after-decision hook (cheap: counts, and a shadow queued on its own thread)."""
        if d.served_by == CHALLENGER:
            self._guard(d)
        if not self.cfg.shadow.enabled or d.source != Source.MODEL:
            return
        other = self.champion() if d.served_by == CHALLENGER else self.challenger
        if other is None or other.bundle is None or other.model_version == d.model_version:
            return
        with self._lock:
            if self._pending >= self.cfg.shadow.max_pending:
                full = True
            else:
                full = False
                self._pending += 1
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.cfg.shadow.threads, thread_name_prefix="shadow"
                    )
        if full:
            self.metrics.shadow.labels("dropped").inc()
            return
        self._pool.submit(self._shadow, d, other.bundle, time.perf_counter())

    def _shadow(self, d: Decision, bundle: Any, queued: float) -> None:
        budget_s = self.cfg.shadow.budget_ms / 1000.0
        try:
            if time.perf_counter() - queued > budget_s:  # waited too long in the queue
                self.metrics.shadow.labels("timeout").inc()
                return
            score = float(bundle.predict(bundle.vectorize([served_row(d)]))[0])
            if time.perf_counter() - queued > budget_s:
                self.metrics.shadow.labels("timeout").inc()
                return
            written = self.log.submit_shadow(d.decision_id, score, bundle.version)
            written.add_done_callback(self._written)
        except Exception as exc:  # a shadow never fails the caller
            self.metrics.shadow.labels("error").inc()
            _LIMITED.warning("shadow-error", "shadow score failed: %s", type(exc).__name__)
        finally:
            with self._lock:
                self._pending -= 1

    def _written(self, future: concurrent.futures.Future) -> None:
        self.metrics.shadow.labels("ok" if future.exception() is None else "write_error").inc()

    def drain(self, timeout_s: float) -> bool:
        """Wait until no shadow is queued or running (tests, shutdown); True when idle."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._pending == 0:
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def refresh_challenger(rollout: Rollout, cfg: ServingConfig, layout: Layout) -> bool:
    """Load the version behind the rollout alias when it changed; True when it did.

    The alias gone (or on the champion's version) removes the challenger; a registry outage
    keeps the current one.
    """
    from serving.assemble import make_runtime

    alias = rollout_alias(cfg.rollout)
    uri = tracking_uri(cfg.model, layout)
    try:
        ref = champion_ref(uri, cfg.model.registered_model, alias)
    except RegistryUnavailable as exc:
        log.info("challenger check: registry unavailable (%s)", exc)
        return False
    current = rollout.challenger
    champion = rollout.champion()
    if ref is None or ref.version == champion.model_version:
        if current is None:
            return False
        rollout.set_challenger(None)
        log.info("no challenger: %s@%s absent or the champion", cfg.model.registered_model, alias)
        return True
    if current is not None and current.model_version == ref.version:
        return False
    try:
        bundle = load_champion(ref, uri, layout.models)
    except Exception as exc:  # a broken challenger never affects the champion
        _LIMITED.error("challenger-load", "challenger v%s not loaded: %s", ref.version, exc)
        return False
    detail = f"{cfg.model.registered_model}@{alias}"
    rollout.set_challenger(
        make_runtime(bundle, "registry", detail, cfg, layout, reuse=champion.reader)
    )
    log.info(
        "challenger v%s loaded (shadow %s, canary share %g)",
        ref.version,
        cfg.rollout.shadow.enabled,
        rollout.share,
    )
    return True


def rollout_alias(cfg: RolloutConfig) -> str:
    return cfg.canary.alias if cfg.canary.enabled else cfg.shadow.alias


def attach_rollout(engine: Any, cfg: ServingConfig, layout: Layout) -> Rollout | None:
    """Shadow / canary on `engine` when either is enabled (None otherwise), challenger loaded."""
    ro = cfg.rollout
    if not (ro.shadow.enabled or ro.canary.enabled):
        return None
    rollout = Rollout(ro, engine.log, lambda: engine.runtime)
    refresh_challenger(rollout, cfg, layout)
    engine.rollout = rollout
    return rollout
