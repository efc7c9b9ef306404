"""`intent rollout compare`: champion vs challenger on the live decision log (+ outcomes).

Frames in, a `RolloutReport` out (pure); `record_rollout` logs it to MLflow.

- Roles: a decision's arm says who served it (`canary=champion` / `canary=challenger`,
  serving.rollout); the versions are each role's most frequent `model_version` (without a
  canary: the served version and the logged `shadow_version`).
- Score agreement: the shadow pairs (a model decision with `shadow_score`), oriented champion
  vs challenger: mean absolute difference, Spearman and Kendall rank correlation (scipy).
- Calibration: each model's scores (served or shadow) against the observed outcome - the
  model predicts abandonment, so a decision followed by `abandoned` is 1, by
  `step_completed` 0, others unobserved -: expected calibration error and Brier score.
- Efficacy by arm: the share of decisions followed by `compare.metric` with Wilson
  intervals; the challenger's lift over the champion arm with a user-level bootstrap
  interval (one user's decisions are not independent; the canary assigns users).
- Fallback and error rates by arm (fallbacks the model cannot help - `canary.guard.ignore`,
  cold starts by default - left out; errors: `model_error`).
- Recommendation (`compare` rule in serving.yaml): rollback when the challenger errs or
  falls back too often or its lift is surely negative; promote when the lift's lower bound
  passes `min_lift` and its calibration is not much worse; hold otherwise (and on too
  little data).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from core.layout import Layout
from core.registry import ModelSourceConfig
from core.vocabulary import Outcome
from loop.stats import Estimate, bootstrap_lift, wilson
from serving.config import RolloutConfig
from serving.rollout import CANARY_EXPERIMENT, CHALLENGER, CHAMPION

NAN = math.nan
PROMOTE, HOLD, ROLLBACK = "promote", "hold", "rollback"
EXPERIMENT = "intent-rollout"  # the MLflow experiment of rollout decisions
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


class RolloutError(ValueError):
    """The log cannot give a comparison (no decisions, no challenger in it)."""


@dataclass(frozen=True)
class Agreement:
    pairs: int
    mean_abs_diff: float
    spearman: float
    kendall: float


@dataclass(frozen=True)
class Calibration:
    n: int  # decisions with an observed outcome
    ece: float
    brier: float


@dataclass(frozen=True)
class ArmStats:
    role: str
    version: str | None
    decisions: int
    users: int
    success: Estimate  # share of decisions followed by the rule's metric
    fallback_rate: float
    error_rate: float


@dataclass(frozen=True)
class RolloutReport:
    champion_version: str | None
    challenger_version: str | None
    agreement: Agreement
    calibration: dict[str, Calibration]  # by role
    arms: dict[str, ArmStats]  # by role (canary decisions only)
    lift: Estimate  # challenger minus champion success rate
    recommendation: str
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow."""
        out = {
            "agreement_pairs": float(self.agreement.pairs),
            "agreement_mean_abs_diff": self.agreement.mean_abs_diff,
            "spearman": self.agreement.spearman,
            "kendall": self.agreement.kendall,
            "lift": self.lift.value,
            "lift_lo": self.lift.lo,
            "lift_hi": self.lift.hi,
        }
        for role, cal in self.calibration.items():
            out |= {f"{role}_ece": cal.ece, f"{role}_brier": cal.brier}
        for role, arm in self.arms.items():
            out |= {
                f"{role}_decisions": float(arm.decisions),
                f"{role}_success": arm.success.value,
                f"{role}_fallback_rate": arm.fallback_rate,
                f"{role}_error_rate": arm.error_rate,
            }
        return out


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def canary_role(arm: Any) -> str | None:
    """`champion` / `challenger` from an arm label like `exp=a,canary=challenger`."""
    if not isinstance(arm, str):
        return None
    for part in arm.split(","):
        name, _, value = part.partition("=")
        if name == CANARY_EXPERIMENT and value in (CHAMPION, CHALLENGER):
            return value
    return None


def _mode(values: pd.Series) -> str | None:
    values = values.dropna()
    return str(values.mode().iloc[0]) if not values.empty else None


def versions(decisions: pd.DataFrame) -> tuple[str | None, str | None]:
    """(champion, challenger) versions as the log shows them."""
    role = decisions["arm"].map(canary_role)
    champion = _mode(decisions.loc[role == CHAMPION, "model_version"])
    challenger = _mode(decisions.loc[role == CHALLENGER, "model_version"])
    if champion is None:
        champion = _mode(decisions.loc[role.isna(), "model_version"])
    if challenger is None and champion is not None:
        challenger = _mode(decisions.loc[decisions["model_version"] == champion, "shadow_version"])
    return champion, challenger


def outcome_flags(decisions: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per decision: one 0/1 column per outcome kind that followed it."""
    ids = decisions["decision_id"]
    flags = pd.DataFrame({"decision_id": ids})
    for kind in Outcome:
        seen = set(outcomes.loc[outcomes["outcome"] == kind.value, "decision_id"])
        flags[kind.value] = ids.isin(seen).astype(int).to_numpy()
    return flags


def agreement(champion: np.ndarray, challenger: np.ndarray) -> Agreement:
    n = len(champion)
    if n == 0:
        return Agreement(0, NAN, NAN, NAN)
    diff = float(np.mean(np.abs(champion - challenger)))
    if n < 3 or np.ptp(champion) == 0 or np.ptp(challenger) == 0:
        return Agreement(n, diff, NAN, NAN)
    rho = stats.spearmanr(champion, challenger).statistic
    tau = stats.kendalltau(champion, challenger).statistic
    return Agreement(n, diff, float(rho), float(tau))


def calibration(scores: np.ndarray, labels: np.ndarray, bins: int) -> Calibration:
    """Expected calibration error over equal-width bins, and the Brier score."""
    n = len(scores)
    if n == 0:
        return Calibration(0, NAN, NAN)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.sum() / n * abs(scores[inside].mean() - labels[inside].mean())
    return Calibration(n, float(ece), float(np.mean((scores - labels) ** 2)))


def _pairs(frame: pd.DataFrame, champion: str | None, challenger: str | None) -> pd.DataFrame:
    """Shadow pairs as columns `champion`, `challenger` (scores), with the decision id."""
    shadow = frame[frame["shadow_score"].notna() & (frame["source"] == "model")]
    forward = shadow[
        (shadow["model_version"] == champion) & (shadow["shadow_version"] == challenger)
    ]
    backward = shadow[
        (shadow["model_version"] == challenger) & (shadow["shadow_version"] == champion)
    ]
    return pd.concat(
        [
            pd.DataFrame({"decision_id": f["decision_id"], CHAMPION: f[a], CHALLENGER: f[b]})
            for f, a, b in ((forward, "score", "shadow_score"), (backward, "shadow_score", "score"))
        ],
        ignore_index=True,
    )


def _role_scores(
    frame: pd.DataFrame, pairs: pd.DataFrame, role: str, version: str | None
) -> pd.DataFrame:
    """Every score `version` gave: served (model decisions) and as the shadow."""
    served = frame[(frame["source"] == "model") & (frame["model_version"] == version)]
    paired = set(pairs["decision_id"])
    served = served[~served["decision_id"].isin(paired)]
    return pd.concat(
        [
            pd.DataFrame({"decision_id": served["decision_id"], "p": served["score"]}),
            pd.DataFrame({"decision_id": pairs["decision_id"], "p": pairs[role]}),
        ],
        ignore_index=True,
    )


def compare(decisions: pd.DataFrame, outcomes: pd.DataFrame, cfg: RolloutConfig) -> RolloutReport:
    """The comparison and its recommendation (see the module doc)."""
    if decisions.empty:
        raise RolloutError("the decision log has no decisions")
    rule = cfg.compare
    champion, challenger = versions(decisions)
    if challenger is None:
        raise RolloutError(
            "no challenger in the decision log: enable rollout.shadow or rollout.canary in "
            "configs/serving.yaml and set the registry alias"
        )
    flags = outcome_flags(decisions, outcomes)
    frame = decisions.reset_index(drop=True).merge(flags, on="decision_id")
    frame["role"] = frame["arm"].map(canary_role)

    pairs = _pairs(frame, champion, challenger)
    agree = agreement(pairs[CHAMPION].to_numpy(float), pairs[CHALLENGER].to_numpy(float))

    observed = frame[
        (frame[Outcome.ABANDONED.value] == 1) | (frame[Outcome.STEP_COMPLETED.value] == 1)
    ]
    label = 1 - observed.set_index("decision_id")[Outcome.STEP_COMPLETED.value]
    cal = {}
    for role, version in ((CHAMPION, champion), (CHALLENGER, challenger)):
        scored = _role_scores(frame, pairs, role, version)
        scored = scored[scored["decision_id"].isin(label.index)]
        y = label.loc[scored["decision_id"]].to_numpy(float)
        cal[role] = calibration(scored["p"].to_numpy(float), y, rule.calibration_bins)

    ignore = set(cfg.canary.guard.ignore)
    arms: dict[str, ArmStats] = {}
    per_user: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for role, version in ((CHAMPION, champion), (CHALLENGER, challenger)):
        arm = frame[frame["role"] == role]
        n = len(arm)
        success = int(arm[rule.metric].sum())
        reasons = arm["fallback_reason"]
        fallbacks = int((reasons.notna() & ~reasons.isin(ignore)).sum())
        errors = int((reasons == "model_error").sum())
        arms[role] = ArmStats(
            role=role,
            version=version,
            decisions=n,
            users=int(arm["user_id"].nunique()),
            success=wilson(success, n, rule.confidence),
            fallback_rate=fallbacks / n if n else NAN,
            error_rate=errors / n if n else NAN,
        )
        grouped = arm.groupby("user_id")[rule.metric].agg(["sum", "count"])
        per_user[role] = (grouped["sum"].to_numpy(), grouped["count"].to_numpy())
    lift = bootstrap_lift(
        per_user[CHALLENGER],
        per_user[CHAMPION],
        resamples=BOOTSTRAP_RESAMPLES,
        confidence=rule.confidence,
        seed=BOOTSTRAP_SEED,
    )
    recommendation, why = recommend(arms, lift, cal, cfg)
    return RolloutReport(champion, challenger, agree, cal, arms, lift, recommendation, why)


def recommend(
    arms: dict[str, ArmStats],
    lift: Estimate,
    cal: dict[str, Calibration],
    cfg: RolloutConfig,
) -> tuple[str, list[str]]:
    """promote / hold / rollback with the reasons, by `cfg.compare`."""
    rule = cfg.compare
    champ, chall = arms[CHAMPION], arms[CHALLENGER]
    if min(champ.decisions, chall.decisions) < rule.min_decisions:
        return HOLD, [
            f"too few canary decisions: champion {champ.decisions}, challenger "
            f"{chall.decisions} (need {rule.min_decisions} each)"
        ]
    back = []
    if chall.error_rate > rule.max_error_rate:
        back.append(f"challenger error rate {chall.error_rate:.3f} > {rule.max_error_rate}")
    if chall.fallback_rate > champ.fallback_rate + rule.max_fallback_increase:
        back.append(
            f"challenger fallback rate {chall.fallback_rate:.3f} > champion "
            f"{champ.fallback_rate:.3f} + {rule.max_fallback_increase}"
        )
    if lift.hi < 0:
        back.append(f"{rule.metric} lift {lift.value:+.3f} [{lift.lo:+.3f}, {lift.hi:+.3f}] < 0")
    if back:
        return ROLLBACK, back
    ece_gap = cal[CHALLENGER].ece - cal[CHAMPION].ece
    if lift.lo > rule.min_lift:
        if ece_gap > rule.max_ece_increase:
            return HOLD, [f"better {rule.metric} but calibration worse by ECE {ece_gap:+.3f}"]
        return PROMOTE, [
            f"{rule.metric} lift {lift.value:+.3f} [{lift.lo:+.3f}, {lift.hi:+.3f}] > "
            f"{rule.min_lift}"
        ]
    return HOLD, [
        f"{rule.metric} lift {lift.value:+.3f} [{lift.lo:+.3f}, {lift.hi:+.3f}] not clear of "
        f"{rule.min_lift}"
    ]


def compare_log(layout: Layout, log_path: Path | None = None) -> RolloutReport:
    """The job: read the configured decision log (or the SQLite file `log_path`), compare."""
    from core.settings import load_config
    from loop.logs import open_decision_log, read_log
    from serving.config import ServingConfig

    cfg = load_config(ServingConfig, layout=layout)
    decisions, outcomes = read_log(open_decision_log(cfg, layout, log_path))
    return compare(decisions, outcomes, cfg.rollout)


def record_rollout(
    report: RolloutReport, layout: Layout, model_source: ModelSourceConfig
) -> tuple[str, bool]:
    """An MLflow run (experiment `intent-rollout`) with the figures, and the recommendation
    as tags on the challenger's registered version. (run id, whether the version was tagged:
    not when the registry does not know it, e.g. a log from elsewhere)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from core.registry import tracking_uri
    from loop.tracking import log_run

    tags = {
        "rollout.recommendation": report.recommendation,
        "rollout.champion_version": str(report.champion_version),
        "rollout.challenger_version": str(report.challenger_version),
    }
    run_id = log_run(
        layout,
        model_source,
        EXPERIMENT,
        run_name=f"rollout v{report.champion_version} vs v{report.challenger_version}",
        kind="rollout",
        params={"reasons": "; ".join(report.reasons)},
        metrics=[(k, v, 0) for k, v in report.metrics().items()],
        artifacts=[],
        tags=tags,
    )
    uri = tracking_uri(model_source, layout)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = str(report.challenger_version)
    figures = {
        "rollout.run_id": run_id,
        "rollout.lift": f"{report.lift.value:.4f}",
        "rollout.lift_ci": f"[{report.lift.lo:.4f}, {report.lift.hi:.4f}]",
    }
    try:
        for key, value in (tags | figures).items():
            client.set_model_version_tag(model_source.registered_model, version, key, value)
    except MlflowException:
        return run_id, False
    return run_id, True
