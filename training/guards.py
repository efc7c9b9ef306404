"""Training guards: is there a signal worth serving?

A model that does not beat the strongest baseline on validation, or whose early stopping kept
only a handful of trees (the validation loss rose almost at once: nothing generalised), is
`no_signal`. The run is still recorded, so the evidence is in MLflow (tag `intent.signal`
and the reasons), but `intent promote` refuses it, even with `--force`, and the server keeps
the previous champion or the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from training.config import GuardConfig

SIGNAL_TAG = "intent.signal"
REASON_TAG = "intent.signal_reason"
SIGNAL = "signal"
NO_SIGNAL = "no_signal"


@dataclass(frozen=True)
class SignalVerdict:
    """`signal` or `no_signal`, with the plain reasons (empty when there is a signal)."""

    status: str
    reasons: list[str] = field(default_factory=list)
    best_baseline: str = ""
    margin: float = math.nan  # validation AUC of the model minus the strongest baseline's

    @property
    def ok(self) -> bool:
        return self.status == SIGNAL

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags of the training run."""
        return {SIGNAL_TAG: self.status, REASON_TAG: "; ".join(self.reasons) or "-"}


def signal_verdict(
    model_auc: float,
    baseline_aucs: Mapping[str, float],
    trees: int,
    cfg: GuardConfig,
) -> SignalVerdict:
    """Judge a run from its validation AUC, the baselines' validation AUCs and its trees."""
    reasons = []
    usable = {k: v for k, v in baseline_aucs.items() if not math.isnan(v)}
    best = max(usable, key=usable.__getitem__) if usable else ""
    margin = model_auc - usable[best] if best else math.nan
    if math.isnan(model_auc):
        reasons.append("validation AUC is undefined (one class in the validation window)")
    elif best and not margin > cfg.min_auc_margin:
        reasons.append(
            f"validation AUC {model_auc:.4f} is not above the strongest baseline "
            f"({best}, {usable[best]:.4f}) by guards.min_auc_margin={cfg.min_auc_margin:g} "
            f"(margin {margin:+.4f}): the model adds nothing a simple rule does not; "
            "more or richer data, or a label the features can predict, is needed"
        )
    if trees < cfg.min_trees:
        reasons.append(
            f"early stopping kept {trees} tree(s), fewer than guards.min_trees="
            f"{cfg.min_trees}: the validation loss rose almost at once, so what the first "
            "trees learnt from the training window does not hold later"
        )
    return SignalVerdict(NO_SIGNAL if reasons else SIGNAL, reasons, best, margin)


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
