"""Drift: PSI of served features and scores against the bundle's training profile.

`DriftMonitor.observe` is the engine's after-decision hook: for a model decision it appends
the served row and score to the rolling window of that model version (a deque append, the
only work on the request path). Every `drift.every` decisions one background thread
vectorizes the window with the bundle (the same encoding the model saw), bins it on the
reference profile's cut points (`core.profile`) and sets the gauges
`intent_feature_psi{feature,model_version}` and `intent_score_psi{model_version}`. Past
`drift.threshold` (on at least `drift.min_rows` rows) the engine's health board notes
`drift` as degraded, so /readyz warns; it never fails readiness. A bundle without a profile
(exported before profiles existed) is served as before, without drift gauges.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from core.bundle import Bundle
from core.profile import ProfileError, ReferenceProfile, bin_shares, load_profile, psi
from serving.config import DriftConfig
from serving.decision import Decision
from serving.health import HealthBoard, Status
from serving.log_limit import LimitedLog

log = logging.getLogger(__name__)
_LIMITED = LimitedLog(log)

COMPONENT = "drift"  # the /readyz dependency name and reason code


@dataclass(frozen=True)
class DriftReport:
    model_version: str
    rows: int
    feature_psi: dict[str, float]
    score_psi: float

    @property
    def worst(self) -> tuple[str, float]:
        """The most drifted series (a feature name or `score`) and its PSI."""
        return max([("score", self.score_psi), *self.feature_psi.items()], key=lambda kv: kv[1])


def drift_report(
    profile: ReferenceProfile, matrix: np.ndarray, scores: np.ndarray, model_version: str
) -> DriftReport:
    """PSI per profiled feature (columns of `matrix` in profile order) and of the scores."""
    feature_psi = {
        col.name: psi(col.shares, bin_shares(matrix[:, i], col))
        for i, col in enumerate(profile.features)
    }
    return DriftReport(
        model_version=model_version,
        rows=len(scores),
        feature_psi=feature_psi,
        score_psi=psi(profile.score.shares, bin_shares(scores, profile.score)),
    )


def served_row(d: Decision) -> dict[str, Any]:
    """The feature row the model scored (signals plus request context, as the engine builds)."""
    return feature_row(d.signals, (d.request.step, d.request.device, d.request.channel, d.moment))


def feature_row(signals: Mapping[str, Any], context: Sequence[Any]) -> dict[str, Any]:
    """Signals plus the context features (step, device, channel, moment) the engine adds;
    also how `intent monitor` rebuilds served rows from the decision log."""
    from serving.engine import CONTEXT_FEATURES

    row = dict(signals)
    for name, value in zip(CONTEXT_FEATURES, context, strict=True):
        if name not in row and value is not None:
            row[name] = str(value)
    return row


@dataclass(frozen=True)
class DriftGauges:
    feature: Any
    score: Any


@cache
def drift_gauges() -> DriftGauges:
    """Gauges in the engine's metrics registry (created on first use, never at import)."""
    from prometheus_client import Gauge

    from serving.metrics import engine_metrics

    reg = engine_metrics().registry
    return DriftGauges(
        feature=Gauge(
            "intent_feature_psi",
            "PSI of a served feature against the training window (0.1 watch, 0.25 act)",
            ["feature", "model_version"],
            registry=reg,
            multiprocess_mode="livemax",
        ),
        score=Gauge(
            "intent_score_psi",
            "PSI of served scores against the training window's scores",
            ["model_version"],
            registry=reg,
            multiprocess_mode="livemax",
        ),
    )


class DriftMonitor:
    """Rolling windows per model version, PSI computed off the request path."""

    def __init__(
        self,
        cfg: DriftConfig,
        bundle_of: Callable[[], Bundle | None],
        health: HealthBoard,
        gauges: Callable[[], DriftGauges] = drift_gauges,
    ) -> None:
        """`bundle_of`: the bundle being served now (e.g. `lambda: engine.runtime.bundle`)."""
        self.cfg = cfg
        self.bundle_of = bundle_of
        self.health = health
        self._gauges = gauges
        self._lock = threading.Lock()
        self._windows: dict[str, deque[tuple[dict[str, Any], float]]] = {}
        self._counts: dict[str, int] = {}
        self._profiles: dict[str, ReferenceProfile | None] = {}
        self._pending = False
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.last: DriftReport | None = None

    def _profile(self, bundle: Bundle) -> ReferenceProfile | None:
        version = bundle.version
        if version not in self._profiles:
            try:
                profile = (
                    load_profile(bundle.path, bundle.manifest.reference_profile_sha256)
                    if bundle.path is not None
                    else None
                )
            except ProfileError as exc:
                _LIMITED.warning("drift-profile", "no drift gauges for %s: %s", version, exc)
                profile = None
            self._profiles[version] = profile
        return self._profiles[version]

    def observe(self, d: Decision) -> None:
        """The after-decision hook: O(1) unless a recompute is due (then it is queued)."""
        if not self.cfg.enabled or d.model_version is None:
            return
        bundle = self.bundle_of()
        if bundle is None or bundle.version != d.model_version:
            return
        with self._lock:
            if self._profile(bundle) is None:
                return
            window = self._windows.get(d.model_version)
            if window is None:
                window = self._windows[d.model_version] = deque(maxlen=self.cfg.window)
            window.append((served_row(d), d.score))
            self._counts[d.model_version] = count = self._counts.get(d.model_version, 0) + 1
            due = count % self.cfg.every == 0 and not self._pending
            if due:
                self._pending = True
        if due:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, "drift")
            self._pool.submit(self._refresh_quietly)

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # drift is a report: it must never break serving
            _LIMITED.warning("drift-error", "drift not computed: %s: %s", type(exc).__name__, exc)
        finally:
            with self._lock:
                self._pending = False

    def refresh(self) -> DriftReport | None:
        """Compute PSI for the served version's window, set the gauges and the health note."""
        bundle = self.bundle_of()
        if bundle is None:
            return None
        with self._lock:
            profile = self._profile(bundle)
            rows = list(self._windows.get(bundle.version, ()))
        if profile is None or not rows:
            return None
        matrix = bundle.vectorize([r for r, _ in rows])
        scores = np.array([s for _, s in rows], dtype=np.float64)
        report = drift_report(profile, matrix, scores, bundle.version)
        self._publish(report)
        self.last = report
        return report

    def _publish(self, report: DriftReport) -> None:
        g = self._gauges()
        for name, value in report.feature_psi.items():
            g.feature.labels(name, report.model_version).set(value)
        g.score.labels(report.model_version).set(report.score_psi)
        for stale in [v for v in self._windows if v != report.model_version]:
            with self._lock:
                self._windows.pop(stale, None)
            for name in report.feature_psi:
                _remove(g.feature, name, stale)
            _remove(g.score, stale)
        if report.rows < self.cfg.min_rows:
            return
        name, value = report.worst
        if value > self.cfg.threshold:
            detail = (
                f"model {report.model_version}: PSI of {name} is {value:.3f} over "
                f"{report.rows} decisions (threshold {self.cfg.threshold}); compare the served "
                "features with the training window and retrain if the shift is real"
            )
            self.health.note(COMPONENT, Status.DEGRADED, COMPONENT, detail)
        else:
            self.health.clear(COMPONENT)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def attach_drift(engine: Any, cfg: DriftConfig) -> DriftMonitor:
    """A monitor on `engine`'s served bundle and health board, chained after its hook."""
    monitor = DriftMonitor(cfg, lambda: engine.runtime.bundle, engine.health)
    previous = engine.on_decision

    def hook(d: Decision) -> None:
        if previous is not None:
            previous(d)
        monitor.observe(d)

    engine.on_decision = hook
    return monitor
