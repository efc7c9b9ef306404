"""`intent promote`: move the champion alias to the challenger when it is not worse.

Both models are scored through their serving bundles (`core.registry.load_champion`, the
server's own loader) on the same rows: the test window of whichever of the two runs was
trained on more recent data, i.e. the most recent window neither model learned from.
The gate (`gate`, pure) accepts when the challenger's AUC is not lower by more than
`auc_tolerance` and no large enough segment (step, device, channel, new vs returning) loses
more than `segment_tolerance`; the challenger must also beat the strongest baseline on its
own test window (its run's `test_roc_auc_minus_best_baseline`). A run the training guards
marked `no_signal` (`training.guards`) is refused outright, `--force` included. Every
decision - promoted, rejected, forced, first model - is logged as its own MLflow run.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.bundle import Bundle
from core.layout import Layout
from core.registry import ChampionRef, load_champion
from training.config import PromotionConfig, TrainingConfig
from training.frame import LABEL, TIMESTAMP, TrainingError
from training.guards import refusal
from training.metrics import clean, has_both_classes, segment_aucs
from training.run import BEST_BASELINE_TAG, TEST_FRAME_ARTIFACT
from training.tracking import (
    BEHAVIOUR_TAG,
    KIND_TAG,
    TrackingError,
    experiment_id,
    model_version,
    session,
    tracking_uri,
    version_by_alias,
)

CANDIDATE_TAG = "intent.candidate_version"
BASELINE_MARGIN_METRIC = "test_roc_auc_minus_best_baseline"


@dataclass(frozen=True)
class SegmentDelta:
    segment: str
    value: str
    rows: int
    champion_auc: float
    challenger_auc: float

    @property
    def delta(self) -> float:
        return self.challenger_auc - self.champion_auc


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict; `reasons` explain a rejection (or note why it passed)."""

    passed: bool
    challenger_auc: float
    champion_auc: float
    reasons: list[str]
    segments: list[SegmentDelta] = field(default_factory=list)

    @property
    def auc_delta(self) -> float:
        return self.challenger_auc - self.champion_auc


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if has_both_classes(labels) else math.nan


def gate(
    frame: pd.DataFrame,
    labels: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    cfg: PromotionConfig,
) -> GateDecision:
    """Compare two models' scores on the same rows (see the module doc)."""
    if not has_both_classes(labels):
        raise TrainingError("the comparison window needs both classes to compute AUC")
    new, old = _auc(labels, challenger), _auc(labels, champion)
    reasons = []
    if new < old - cfg.auc_tolerance:
        reasons.append(
            f"AUC {new:.4f} is {old - new:.4f} below the champion's {old:.4f} "
            f"(tolerance {cfg.auc_tolerance:g})"
        )
    a = segment_aucs(frame, labels, challenger, cfg.segments, cfg.min_segment_rows)
    b = segment_aucs(frame, labels, champion, cfg.segments, cfg.min_segment_rows)
    deltas = [
        SegmentDelta(x.segment, x.value, x.rows, y.roc_auc, x.roc_auc)
        for x, y in zip(a.itertuples(), b.itertuples(), strict=True)
        if not math.isnan(x.roc_auc) and not math.isnan(y.roc_auc)
    ]
    for d in deltas:
        if d.delta < -cfg.segment_tolerance:
            reasons.append(
                f"{d.segment}={d.value} ({d.rows} rows) AUC {d.challenger_auc:.4f} is "
                f"{-d.delta:.4f} below the champion's {d.champion_auc:.4f} "
                f"(bound {cfg.segment_tolerance:g})"
            )
    return GateDecision(not reasons, new, old, reasons, deltas)


def bundle_scores(bundle: Bundle, frame: pd.DataFrame) -> np.ndarray:
    """A bundle's calibrated scores on a frame; every feature it reads must be a column."""
    missing = [n for n in bundle.feature_names if n not in frame.columns]
    if missing:
        raise TrainingError(
            f"version {bundle.version} reads features the comparison window lacks: {missing}"
        )
    return bundle.predict(bundle.vectorize_frame(frame))


@dataclass(frozen=True)
class PromotionResult:
    challenger: str
    champion_before: str | None
    champion_after: str | None
    promoted: bool
    forced: bool  # promoted only because of --force
    decision: GateDecision | None  # None: first model, or already the champion
    reasons: list[str]  # why the gate failed (AUC, segments, behavioural checks)
    run_id: str | None  # the comparison run (None: nothing to do)
    window_rows: int
    note: str


@dataclass(frozen=True)
class _Verdict:
    passed: bool
    decision: GateDecision | None
    reasons: list[str]
    notes: list[str]
    challenger_auc: float


def promote(
    layout: Layout, cfg: TrainingConfig, *, version: str | None = None, force: bool = False
) -> PromotionResult:
    """Evaluate the challenger (or `version`) against the champion and move the alias."""
    reg = cfg.registry
    uri = tracking_uri(layout, cfg.tracking)
    with session(uri) as client:
        candidate = _candidate(client, cfg, version)
        current = version_by_alias(client, reg.model_name, reg.champion_alias)
        new = str(candidate.version)
        old = str(current.version) if current is not None else None
        if old == new:
            note = f"version {new} is already {reg.champion_alias}"
            return PromotionResult(new, old, old, False, False, None, [], None, 0, note)
        challenger = load_champion(
            ChampionRef(new, candidate.run_id, reg.model_name), uri, layout.models
        )
        champion = (
            load_champion(ChampionRef(old, current.run_id, reg.model_name), uri, layout.models)
            if current is not None and old is not None
            else None
        )
        newest = max(
            [b for b in (challenger, champion) if b is not None],
            key=lambda b: b.manifest.training_window.end,
        )
        frame = _test_window(uri, newest.manifest.run_id)
        run_data = client.get_run(candidate.run_id).data
        behaviour = run_data.tags.get(BEHAVIOUR_TAG, "not recorded")
        verdict = _verdict(frame, challenger, champion, behaviour, cfg)
        blocked = refusal(run_data.tags, new)
        margin = run_data.metrics.get(BASELINE_MARGIN_METRIC)
        baseline = baseline_reason(margin, run_data.tags, cfg.promotion)
        if baseline:
            verdict = replace(verdict, passed=False, reasons=[*verdict.reasons, baseline])
        if blocked:
            verdict = replace(verdict, passed=False, reasons=[blocked, *verdict.reasons])
        promoted = (verdict.passed or force) and not blocked
        forced = promoted and not verdict.passed
        headline = (
            "gate passed"
            if verdict.passed
            else "no_signal: refused (never promoted, --force included)"
            if blocked
            else "gate failed; promoted anyway with --force"
            if forced
            else "gate failed; champion unchanged"
        )
        notes = [headline, *verdict.notes]
        run_id = _log_comparison(
            client, layout, cfg, new, old, verdict, notes, promoted, forced, force, frame, newest
        )
        if promoted:
            client.set_registered_model_alias(reg.model_name, reg.champion_alias, new)
            # the challenger alias marks a candidate awaiting a decision: this one is decided
            if _alias_points_at(client, reg.model_name, reg.challenger_alias, new):
                client.delete_registered_model_alias(reg.model_name, reg.challenger_alias)
            client.set_model_version_tag(reg.model_name, new, "promoted_by_run", run_id)
    return PromotionResult(
        challenger=new,
        champion_before=old,
        champion_after=new if promoted else old,
        promoted=promoted,
        forced=forced,
        decision=verdict.decision,
        reasons=verdict.reasons,
        run_id=run_id,
        window_rows=len(frame),
        note="; ".join(notes),
    )


def baseline_reason(
    margin: float | None, tags: Mapping[str, str], cfg: PromotionConfig
) -> str | None:
    """Why the challenger fails the strongest-baseline check of its own test window."""
    if margin is None:
        return None  # a run from before baselines were recorded: nothing to compare
    if margin > cfg.min_margin_over_best_baseline:
        return None
    best = tags.get(BEST_BASELINE_TAG, "the strongest baseline")
    return (
        f"test AUC is {margin:+.4f} over {best} on its own test window, not above "
        f"promotion.min_margin_over_best_baseline={cfg.min_margin_over_best_baseline:g}: "
        "serving it would not beat a simple rule"
    )


def _candidate(client, cfg: TrainingConfig, version: str | None):
    reg = cfg.registry
    if version is not None:
        return model_version(client, reg.model_name, version)
    candidate = version_by_alias(client, reg.model_name, reg.challenger_alias)
    if candidate is None:
        raise TrackingError(
            f"no {reg.model_name}@{reg.challenger_alias} to promote; run `intent train`"
        )
    return candidate


def _verdict(
    frame: pd.DataFrame,
    challenger: Bundle,
    champion: Bundle | None,
    behaviour: str,
    cfg: TrainingConfig,
) -> _Verdict:
    """The gate on the comparison window, plus the challenger's behavioural checks."""
    labels = frame[LABEL].to_numpy(np.int64)
    new_scores = bundle_scores(challenger, frame)
    reasons: list[str] = []
    notes: list[str] = []
    decision = None
    if champion is None:
        notes.append(f"no {cfg.registry.champion_alias} yet: the first model becomes champion")
        challenger_auc = _auc(labels, new_scores)
    else:
        old_scores = bundle_scores(champion, frame)
        decision = gate(frame, labels, new_scores, old_scores, cfg.promotion)
        reasons += decision.reasons
        challenger_auc = decision.challenger_auc
        window_start = pd.Timestamp(frame[TIMESTAMP].min()).to_pydatetime()
        trained_until = champion.manifest.training_window.end
        if trained_until > window_start:
            notes.append(
                f"version {champion.version} was trained on data up to "
                f"{trained_until:%Y-%m-%d %H:%M}, inside the comparison window: "
                "the comparison favours it"
            )
    if behaviour != "passed":
        reasons.append(f"behavioural checks of version {challenger.version}: {behaviour}")
    return _Verdict(not reasons, decision, reasons, notes, challenger_auc)


def _log_comparison(
    client,
    layout: Layout,
    cfg: TrainingConfig,
    new: str,
    old: str | None,
    verdict: _Verdict,
    notes: list[str],
    promoted: bool,
    forced: bool,
    force: bool,
    frame: pd.DataFrame,
    newest: Bundle,
) -> str:
    """The comparison as its own run (kind=promote); returns its id."""
    import mlflow

    tags = {
        KIND_TAG: "promote",
        CANDIDATE_TAG: new,
        "intent.champion_version": old or "none",
        "intent.decision": "promoted" if promoted else "rejected",
        "intent.forced": str(forced).lower(),
        "intent.force_flag": str(force).lower(),
        "mlflow.note.content": "\n".join(notes + verdict.reasons),
    }
    name = f"promote-v{new}" + (f"-vs-v{old}" if old else "")
    exp = experiment_id(client, cfg.registry.experiment, layout)
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=tags) as run:
        mlflow.log_params(
            {
                "auc_tolerance": cfg.promotion.auc_tolerance,
                "segment_tolerance": cfg.promotion.segment_tolerance,
                "min_segment_rows": cfg.promotion.min_segment_rows,
                "window_run_id": newest.manifest.run_id,
                "window_rows": len(frame),
                "force": force,
            }
        )
        mlflow.log_metrics(_comparison_metrics(verdict))
        mlflow.log_dict(_comparison_record(verdict, notes), "comparison.json")
        return run.info.run_id


def _alias_points_at(client, model: str, alias: str, version: str) -> bool:
    found = version_by_alias(client, model, alias)
    return found is not None and str(found.version) == version


def _test_window(uri: str, run_id: str | None) -> pd.DataFrame:
    """The test window a training run logged (`evaluation/test_frame.parquet`)."""
    import mlflow

    if run_id is None:
        raise TrainingError("the bundle names no training run, so it has no test window")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=TEST_FRAME_ARTIFACT, dst_path=tmp, tracking_uri=uri
            )
        except Exception as exc:
            raise TrainingError(f"run {run_id} has no {TEST_FRAME_ARTIFACT}: {exc}") from exc
        return pd.read_parquet(Path(local))


def _comparison_metrics(verdict: _Verdict) -> dict[str, float]:
    decision = verdict.decision
    if decision is None:
        return {"challenger_test_roc_auc": verdict.challenger_auc}
    metrics = {
        "challenger_test_roc_auc": decision.challenger_auc,
        "champion_test_roc_auc": decision.champion_auc,
        "delta_test_roc_auc": decision.auc_delta,
    }
    for d in decision.segments:
        key = f"{d.segment}.{clean(d.value)}"
        metrics[f"challenger_test_roc_auc.{key}"] = d.challenger_auc
        metrics[f"champion_test_roc_auc.{key}"] = d.champion_auc
        metrics[f"delta_test_roc_auc.{key}"] = d.delta
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def _comparison_record(verdict: _Verdict, notes: list[str]) -> dict:
    record: dict = {"passed": verdict.passed, "reasons": verdict.reasons, "notes": notes}
    decision = verdict.decision
    if decision is not None:
        record |= {
            "challenger_auc": decision.challenger_auc,
            "champion_auc": decision.champion_auc,
            "segments": [d.__dict__ | {"delta": d.delta} for d in decision.segments],
        }
    return record
