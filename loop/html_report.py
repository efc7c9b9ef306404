"""The efficacy report as one self-contained HTML file (plots embedded as base64 PNG, no
scripts, no external assets: it opens offline, from an e-mail or an MLflow artifact)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from loop.efficacy import DIMENSIONS, ArmComparison, Efficacy, SegmentRow
from loop.plots import bar_plot
from loop.stats import Estimate

SECTION_IDS: tuple[str, ...] = (
    "summary",
    "lift",
    *(f"by-{dim}" for dim, _ in DIMENSIONS),
    "caps",
    "experiments",
    "definitions",
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
.note { color: #555; font-size: 0.85rem; }
img { max-width: 100%; }
"""


def _rate(e: Estimate) -> str:
    if math.isnan(e.value):
        return "-"
    if math.isnan(e.lo):
        return f"{e.value:.1%}"
    return f"{e.value:.1%} [{e.lo:.1%}, {e.hi:.1%}]"


def _pp(e: Estimate) -> str:
    if math.isnan(e.value):
        return "-"
    return f"{e.value * 100:+.1f} pp [{e.lo * 100:+.1f}, {e.hi * 100:+.1f}]"


def segment_table(rows: Sequence[SegmentRow]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment": [r.value for r in rows],
            "decisions": [r.decisions for r in rows],
            "users": [r.users for r in rows],
            "triggers shown": [r.shown for r in rows],
            "trigger rate": [_rate(r.trigger_rate) for r in rows],
            "accepted": [_rate(r.acceptance) for r in rows],
            "completion": [_rate(r.completion) for r in rows],
            "holdout completion": [_rate(r.holdout_completion) for r in rows],
            "lift over holdout": [_pp(r.lift) for r in rows],
            "capped": [f"{r.capped} ({_rate(r.cap_rate)})" for r in rows],
            "censored": [r.censored for r in rows],
        }
    )


def experiment_table(arms: Sequence[ArmComparison]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment": [a.experiment for a in arms],
            "arm": [a.arm for a in arms],
            "users": [a.users for a in arms],
            "completion": [_rate(a.completion) for a in arms],
            "control": [a.control for a in arms],
            "control users": [a.control_users for a in arms],
            "control completion": [_rate(a.control_completion) for a in arms],
            "difference": [_pp(a.difference) for a in arms],
            "z": ["-" if math.isnan(a.z) else f"{a.z:.2f}" for a in arms],
            "p-value": ["-" if math.isnan(a.p_value) else f"{a.p_value:.3f}" for a in arms],
            "MDE (abs.)": ["-" if math.isnan(a.mde) else f"{a.mde * 100:.1f} pp" for a in arms],
        }
    )


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="-")


def _plots(eff: Efficacy, min_decisions: int) -> dict[str, str]:
    """Plots of the segments big enough to mean something (`min_decisions`)."""
    out: dict[str, str] = {}
    actions = [r for r in eff.tables["would_action"] if not math.isnan(r.lift.value)]
    if actions:
        out["lift"] = _img(
            bar_plot(
                [r.value for r in actions],
                {"lift": [r.lift for r in actions]},
                ylabel="completion lift over holdout (pp)",
                title="lift over the global holdout, by the policy's action",
                zero_line=True,
            ),
            "lift by action",
        )
    moments = [r for r in eff.tables["moment"] if r.decisions >= min_decisions]
    if moments:
        out["moment"] = _img(
            bar_plot(
                [r.value for r in moments],
                {
                    "trigger rate": [r.trigger_rate for r in moments],
                    "accepted": [r.acceptance for r in moments],
                    "completion": [r.completion for r in moments],
                    "holdout completion": [r.holdout_completion for r in moments],
                },
                ylabel="%",
                title="by micro-moment",
            ),
            "by micro-moment",
        )
    if eff.experiments:
        labels = [f"{a.experiment}\n{a.arm} vs {a.control}" for a in eff.experiments]
        out["experiments"] = _img(
            bar_plot(
                labels,
                {
                    "arm": [a.completion for a in eff.experiments],
                    "control": [a.control_completion for a in eff.experiments],
                },
                ylabel="completion within horizon (%)",
                title="experiments (first decision per user)",
            ),
            "experiments",
        )
    return out


def render(
    eff: Efficacy,
    *,
    title: str,
    facts: Mapping[str, str],
    definitions: Mapping[str, str],
    min_decisions: int,
) -> str:
    """The whole report as an HTML document."""
    plots = _plots(eff, min_decisions)
    o, u = eff.overall, eff.users
    headline = (
        f"Users outside the holdout completed onboarding {_rate(u.completion)} of the time "
        f"({u.users:,} users), held-out users {_rate(u.holdout_completion)} "
        f"({u.holdout_users:,}): {_pp(u.difference)}. Per decision, the step was completed "
        f"within the horizon {_rate(o.completion)} against {_rate(o.holdout_completion)}: "
        f"lift {_pp(o.lift)}."
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<section id="summary"><h2>Summary</h2>',
        f"<p>{html.escape(headline)}</p>",
        _table(pd.DataFrame({"": list(facts), "value": list(facts.values())})),
        "</section>",
        '<section id="lift"><h2>Lift over the global holdout</h2>',
        '<p class="note">Intent to treat: every decision of non-held-out users, shown or '
        "capped, against held-out users' decisions with the same would-be action. Intervals "
        "resample users. Decisions after a user's earlier triggers carry their spill-over "
        "(a helped user scores lower next time), so the per-user onboarding completion in "
        "the summary is the cleaner top line.</p>",
        plots.get("lift", '<p class="note">Too few decisions for a lift.</p>'),
        "</section>",
    ]
    for dim, label in DIMENSIONS:
        parts += [
            f'<section id="by-{dim}"><h2>By {html.escape(label)}</h2>',
            _table(segment_table(eff.tables[dim])),
        ]
        if dim == "moment" and "moment" in plots:
            parts.append(plots["moment"])
        parts.append("</section>")
    parts += [
        '<section id="caps"><h2>Caps</h2>',
        '<p class="note">Triggers the policy wanted for non-held-out users, by what the '
        "frequency caps did.</p>",
        _table(eff.caps),
        "</section>",
        '<section id="experiments"><h2>Experiments</h2>',
    ]
    if eff.experiments:
        parts += [
            '<p class="note">Per user (the unit of randomisation): completion of the step of '
            "the user's first decision in the experiment. Two-sided two-proportion z-test "
            "against the control arm; Newcombe interval of the difference; MDE = the smallest "
            "difference this sample size detects at the configured alpha and power.</p>",
            _table(experiment_table(eff.experiments)),
            plots.get("experiments", ""),
        ]
    else:
        parts.append('<p class="note">No experiment arms in the log.</p>')
    parts += [
        "</section>",
        '<section id="definitions"><h2>Definitions</h2><dl>',
        *(
            f"<dt><b>{html.escape(k)}</b></dt><dd>{html.escape(v)}</dd>"
            for k, v in definitions.items()
        ),
        "</dl></section>",
        "</body></html>",
    ]
    return "\n".join(parts)
