"""Evaluation plots as matplotlib Figures (Agg canvas, no pyplot global state).

Each function takes arrays and returns a Figure; the caller saves or logs it. Figures are
built with `matplotlib.figure.Figure` directly, so nothing depends on a display or on
pyplot's backend selection, and plotting is safe off the main thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

_STYLE = {"model": "C0", "model (raw)": "C0", "rules": "C3", "oracle": "C2"}


def _figure(title: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(6, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return fig, ax


def roc_figure(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = _figure("ROC, test window")
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(labels, s)
        ax.plot(
            fpr, tpr, color=_STYLE.get(name), label=f"{name} (AUC {roc_auc_score(labels, s):.3f})"
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return fig


def pr_figure(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = _figure("Precision-recall, test window")
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(labels, s)
        ap = average_precision_score(labels, s)
        ax.plot(recall, precision, color=_STYLE.get(name), label=f"{name} (AP {ap:.3f})")
    ax.axhline(np.mean(labels), color="grey", linestyle=":", linewidth=1, label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="upper right")
    return fig


def calibration_figure(labels: np.ndarray, scores: Mapping[str, np.ndarray], bins: int) -> Figure:
    """Observed abandonment rate against mean score per equal-width bin."""
    fig, ax = _figure("Calibration, test window")
    edges = np.linspace(0, 1, bins + 1)
    for name, s in scores.items():
        which = np.clip(np.digitize(np.clip(s, 0, 1), edges[1:-1]), 0, bins - 1)
        xs, ys = [], []
        for b in range(bins):
            mask = which == b
            if mask.any():
                xs.append(float(s[mask].mean()))
                ys.append(float(np.mean(labels[mask])))
        ax.plot(
            xs,
            ys,
            marker="o",
            color=_STYLE.get(name),
            label=name,
            linestyle="--" if "raw" in name else "-",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed abandonment rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return fig


def importance_figure(names: Sequence[str], gains: np.ndarray, top: int) -> Figure:
    """Share of total split gain per feature, largest first."""
    share = gains / gains.sum() if gains.sum() > 0 else gains
    order = np.argsort(share)[::-1][:top][::-1]
    fig = Figure(figsize=(7, max(3, 0.3 * len(order) + 1)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.barh([names[i] for i in order], share[order], color="C0")
    ax.set_title("Feature importance (share of gain)")
    ax.set_xlabel("share of total gain")
    return fig


def contributions_figure(
    names: Sequence[str], contributions: np.ndarray, values: np.ndarray, top: int
) -> Figure:
    """SHAP-style summary: one row per feature (largest mean |contribution| on top), one dot
    per test row at its contribution in log-odds, coloured by the feature's value rank."""
    contrib = contributions[:, : len(names)]  # the last column is the bias
    order = np.argsort(np.abs(contrib).mean(axis=0))[::-1][:top]
    fig = Figure(figsize=(8, max(3, 0.35 * len(order) + 1.5)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for row, j in enumerate(order[::-1]):
        v = values[:, j]
        rank = np.full(len(v), 0.5)
        finite = ~np.isnan(v)
        if finite.sum() > 1:
            rank[finite] = np.argsort(np.argsort(v[finite])) / (finite.sum() - 1)
        jitter = rng.uniform(-0.3, 0.3, len(v))
        points = ax.scatter(
            contrib[:, j],
            row + jitter,
            c=rank,
            cmap="coolwarm",
            s=4,
            vmin=0,
            vmax=1,
            alpha=0.6,
            linewidths=0,
        )
    ax.set_yticks(range(len(order)), [names[j] for j in order[::-1]])
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_xlabel("contribution to the log-odds of abandonment")
    ax.set_title("Feature contributions (LightGBM pred_contrib), test rows")
    if len(order):
        fig.colorbar(points, ax=ax, label="feature value (rank: low -> high)")
    return fig


def learning_curve_figure(valid_logloss: Sequence[float], best: int) -> Figure:
    fig, ax = _figure("Validation log loss by round")
    ax.plot(range(1, len(valid_logloss) + 1), valid_logloss, color="C0")
    ax.axvline(best, color="grey", linestyle=":", label=f"best round {best}")
    ax.set_xlabel("boosting round")
    ax.set_ylabel("weighted log loss")
    ax.legend()
    return fig
