"""Training guards: is there a signal worth serving?

A model that does not beat every baseline on validation with confidence, or whose early
stopping kept only a handful of trees (the validation loss rose almost at once: nothing
generalised), is `no_signal`. "With confidence": the lower bound of DeLong's one-sided
`guards.confidence` interval of AUC(model) - AUC(baseline) must exceed `guards.min_auc_margin`,
so the margin a run needs grows with the noise of its validation window (a fixed 0.005 let a
noise label through once, 0.022 above the logistic baseline on small data).

The run is still recorded, so the evidence is in MLflow (tag `intent.signal` and the
reasons), but `intent promote` refuses it, even with `--force`, and the server keeps
the previous champion or the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from training.config import GuardConfig
from training.delong import AucDifference, paired_auc_difference

SIGNAL_TAG = "intent.signal"
REASON_TAG = "intent.signal_reason"
SIGNAL = "signal"
NO_SIGNAL = "no_signal"
# A constant score (AUC 0.5): on noise every baseline can land below chance, and beating
# those alone proves nothing.
CHANCE = "chance"


@dataclass(frozen=True)
class BaselineComparison:
    """The model against one baseline on the validation rows (DeLong, paired)."""

    baseline: str
    auc: AucDifference  # auc_a: the model, auc_b: the baseline


@dataclass(frozen=True)
class SignalVerdict:
    """`signal` or `no_signal`, with the plain reasons (empty when there is a signal)."""

    status: str
    reasons: list[str] = field(default_factory=list)
    best_baseline: str = ""
    margin: float = math.nan  # validation AUC of the model minus the strongest baseline's
    margin_lower: float = math.nan  # the smallest lower bound over the baselines
    margin_se: float = math.nan  # standard error of the difference to the strongest baseline

    @property
    def ok(self) -> bool:
        return self.status == SIGNAL

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags of the training run."""
        return {SIGNAL_TAG: self.status, REASON_TAG: "; ".join(self.reasons) or "-"}


def compare_baselines(
    labels: np.ndarray,
    model: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    confidence: float,
) -> list[BaselineComparison]:
    """The model against each baseline and against chance (a constant score) on the same
    rows; empty with one class only."""
    labels = np.asarray(labels)
    if not 0 < labels.sum() < len(labels):
        return []
    scorers = {**baselines, CHANCE: np.zeros(len(labels))}
    return [
        BaselineComparison(name, paired_auc_difference(labels, model, scores, confidence))
        for name, scores in scorers.items()
    ]


def signal_verdict(
    comparisons: Sequence[BaselineComparison], trees: int, cfg: GuardConfig
) -> SignalVerdict:
    """Judge a run from its paired validation comparisons with the baselines and its trees."""
    reasons = []
    best = max(comparisons, key=lambda c: c.auc.auc_b, default=None)
    weakest = min(comparisons, key=lambda c: c.auc.lower, default=None)
    if best is None or weakest is None:
        reasons.append("validation AUC is undefined (one class in the validation window)")
    elif not weakest.auc.lower > cfg.min_auc_margin:
        d = weakest.auc
        reasons.append(
            f"validation AUC {d.auc_a:.4f} is not above the {weakest.baseline} baseline's "
            f"{d.auc_b:.4f} with confidence: difference {d.difference:+.4f}, DeLong standard "
            f"error {d.standard_error:.4f}, one-sided {d.confidence:.0%} lower bound "
            f"{d.lower:+.4f} <= guards.min_auc_margin={cfg.min_auc_margin:g}; the model adds "
            "nothing a simple rule does not, as far as this validation window can tell: more "
            "or richer data, or a label the features can predict, is needed"
        )
    if trees < cfg.min_trees:
        reasons.append(
            f"early stopping kept {trees} tree(s), fewer than guards.min_trees="
            f"{cfg.min_trees}: the validation loss rose almost at once, so what the first "
            "trees learnt from the training window does not hold later"
        )
    return SignalVerdict(
        NO_SIGNAL if reasons else SIGNAL,
        reasons,
        best.baseline if best else "",
        best.auc.difference if best else math.nan,
        weakest.auc.lower if weakest else math.nan,
        best.auc.standard_error if best else math.nan,
    )


def signal_line(tags: Mapping[str, str]) -> str:
    """A run's verdict in one line, from its MLflow tags."""
    status = tags.get(SIGNAL_TAG, "not recorded")
    reason = tags.get(REASON_TAG, "-")
    return status if reason == "-" or status != NO_SIGNAL else f"{status}: {reason}"


def refusal(tags: Mapping[str, str], version: str) -> str | None:
    """Why a registered version may not be promoted (from its training run's tags), or None."""
    if tags.get(SIGNAL_TAG) == NO_SIGNAL:
        why = tags.get(REASON_TAG, "no reason recorded")
        return f"version {version} is no_signal and can never be promoted (--force too): {why}"
    return None
