"""Plots of the loop as PNG bytes (matplotlib's object API: no global pyplot state, no
display needed). Callers write the bytes to a file or embed them in HTML."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from loop.stats import Estimate

_DPI = 110


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float, height: float, cols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, cols)
    return fig, axes


def _yerr(estimates: Sequence[Estimate], scale: float = 1.0) -> list[list[float]]:
    """Asymmetric error bars; 0 where an interval is unknown."""
    lower = [0.0 if math.isnan(e.lo) else (e.value - e.lo) * scale for e in estimates]
    upper = [0.0 if math.isnan(e.hi) else (e.hi - e.value) * scale for e in estimates]
    return [lower, upper]


def funnel_plot(
    steps: Sequence[str],
    funnels: Mapping[str, Sequence[Estimate]],
    tradeoff: Mapping[str, tuple[Estimate, Estimate]],
    title: str,
) -> bytes:
    """Left: share of users completing each step, per policy (intervals over seeds).
    Right: completion against triggers per user-day - what each policy pays for its gain."""
    fig, (left, right) = _figure(12, 4.6, 2)
    x = list(range(len(steps)))
    for name, values in funnels.items():
        left.errorbar(
            x,
            [v.value * 100 for v in values],
            yerr=_yerr(values, 100),
            marker="o",
            capsize=3,
            label=name,
        )
    left.set_xticks(x, [s.replace("_", "\n") for s in steps], fontsize=8)
    left.set_ylabel("users who completed the step (%)")
    left.set_ylim(0, 102)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("funnel")
    for name, (triggers, completion) in tradeoff.items():
        right.errorbar(
            [triggers.value],
            [completion.value * 100],
            xerr=_yerr([triggers]),
            yerr=_yerr([completion], 100),
            marker="o",
            capsize=3,
            label=name,
        )
        right.annotate(
            name,
            (triggers.value, completion.value * 100),
            fontsize=8,
            xytext=(5, 5),
            textcoords="offset points",
        )
    right.set_xlabel("triggers per active user-day")
    right.set_ylabel("onboarding completion (%)")
    right.grid(alpha=0.3)
    right.set_title("completion vs triggers")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def bar_plot(
    labels: Sequence[str],
    series: Mapping[str, Sequence[Estimate]],
    *,
    ylabel: str,
    title: str,
    percent: bool = True,
    zero_line: bool = False,
) -> bytes:
    """Grouped bars with interval whiskers, one group per label, one bar per series."""
    width = max(6.0, 0.9 * len(labels) * max(1, len(series)) + 2)
    fig, ax = _figure(min(width, 14), 4.0)
    scale = 100.0 if percent else 1.0
    n = max(1, len(series))
    step = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [j - 0.4 + step * (i + 0.5) for j in range(len(labels))]
        heights = [0.0 if math.isnan(v.value) else v.value * scale for v in values]
        ax.bar(xs, heights, width=step * 0.95, label=name)
        ax.errorbar(
            xs,
            heights,
            yerr=_yerr(values, scale),
            fmt="none",
            ecolor="black",
            capsize=3,
            linewidth=1,
        )
    ax.set_xticks(range(len(labels)), [s.replace("_", "\n") for s in labels], fontsize=8)
    ax.set_ylabel(ylabel)
    if zero_line:
        ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _png(fig)
