"""The files of a policy evaluation: markdown summary, per-seed CSV, JSON, funnel PNG.

Written under `<reports>/evaluate-policy/<stamp>/`; the same files go to the MLflow run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from loop.evaluate import RunResult
from loop.metrics import (
    ACCEPTANCE,
    COMPLETION,
    DESCRIPTIONS,
    LIVE_CHAT,
    MODEL_SHARE,
    OVER_CAP,
    TRIGGERS_PER_USER_DAY,
    UNNEEDED,
    completed_key,
    dropoff_key,
)
from loop.plots import funnel_plot
from loop.stats import Estimate
from loop.summary import CaseRow, PolicySummary, num, pct, signed_pct, signed_pp

SUMMARY_FILE = "summary.md"
RUNS_FILE = "runs.csv"
ESTIMATES_FILE = "estimates.json"
FUNNEL_FILE = "funnel.png"


def runs_frame(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per (policy, seed) with every metric and the run time."""
    rows = [
        {"policy": r.policy, "seed": r.seed, "seconds": round(r.seconds, 2), **r.metrics}
        for r in results
    ]
    return pd.DataFrame(rows).sort_values(["policy", "seed"]).reset_index(drop=True)


def comparison_rows(
    summaries: Mapping[str, PolicySummary],
    baseline: str,
    focus_step: str,
    *,
    intervals: bool = True,
) -> list[list[str]]:
    """Header + one row per policy: the headline metrics (with intervals, or the point
    estimates only for a narrow terminal; the difference from the baseline keeps its own)."""
    drop = dropoff_key(focus_step)
    header = [
        "policy",
        "completion",
        "vs baseline",
        f"drop-off {focus_step}",
        "triggers / user-day",
        "user-days over cap",
        "unneeded",
        "accepted",
        "live chat / 1k",
        "model-scored",
    ]

    def share(e):
        return pct(e) if intervals else pct(_point(e))

    def diff(e):
        return e if intervals else _point(e)

    def number(e, digits=2):
        return num(e, digits) if intervals else num(_point(e), digits)

    rows = [header]
    for name, s in summaries.items():
        m = s.metrics
        rows.append(
            [
                name,
                share(m[COMPLETION]),
                "-" if name == baseline else signed_pp(diff(s.diff[COMPLETION])),
                share(m[drop]),
                number(m[TRIGGERS_PER_USER_DAY]),
                share(m[OVER_CAP]),
                share(m[UNNEEDED]),
                share(m[ACCEPTANCE]),
                number(m[LIVE_CHAT], 1),
                share(m[MODEL_SHARE]),
            ]
        )
    return rows


def _point(e: Estimate) -> Estimate:
    return Estimate(e.value, math.nan, math.nan, e.n)


def dropoff_rows(summaries: Mapping[str, PolicySummary], steps: Sequence[str]) -> list[list[str]]:
    """Header + one row per policy: drop-off at every funnel step."""
    rows = [["policy", *steps]]
    for name, s in summaries.items():
        rows.append([name, *(pct(s.metrics[dropoff_key(step)]) for step in steps)])
    return rows


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def summary_markdown(
    title: str,
    context: Sequence[str],
    case: Sequence[CaseRow],
    baseline: str,
    headline: str,
    comparison: Sequence[Sequence[str]],
    dropoffs: Sequence[Sequence[str]],
    notes: Sequence[str],
) -> str:
    case_rows = [["Metric", f"Before ({baseline})", f"After ({headline})", "Improvement"]]
    case_rows += [[c.metric, c.before, c.after, c.improvement] for c in case]
    parts = [
        f"# {title}",
        "",
        *(f"- {line}" for line in context),
        "",
        "## Case study (the source document's table)",
        "",
        markdown_table(case_rows),
        "",
        "## All policies",
        "",
        markdown_table(comparison),
        "",
        "Values are means over seeds with their intervals in brackets; differences are paired",
        "by seed (the same simulated users under each policy).",
        "",
        "## Drop-off at each step",
        "",
        "Share of the users reaching a step who never complete it.",
        "",
        markdown_table(dropoffs),
        "",
        "## Metrics",
        "",
        *(f"- `{k}`: {v}" for k, v in DESCRIPTIONS.items()),
    ]
    if notes:
        parts += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(parts) + "\n"


def estimates_json(summaries: Mapping[str, PolicySummary]) -> str:
    def clean(d: dict) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    out = {
        name: {
            "seeds": list(s.seeds),
            "metrics": {k: clean(asdict(e)) for k, e in s.metrics.items()},
            "diff_vs_baseline": {k: clean(asdict(e)) for k, e in s.diff.items()},
            "relative_vs_baseline": {k: clean(asdict(e)) for k, e in s.relative.items()},
        }
        for name, s in summaries.items()
    }
    return json.dumps(out, indent=2)


def funnel_png(summaries: Mapping[str, PolicySummary], steps: Sequence[str], title: str) -> bytes:
    funnels = {n: [s.metrics[completed_key(step)] for step in steps] for n, s in summaries.items()}
    tradeoff = {
        n: (s.metrics[TRIGGERS_PER_USER_DAY], s.metrics[COMPLETION]) for n, s in summaries.items()
    }
    return funnel_plot(steps, funnels, tradeoff, title)


def metric_series(summaries: Mapping[str, PolicySummary]) -> list[tuple[str, float, int]]:
    """MLflow metrics: `<policy>.<metric>` (mean), `.lo` / `.hi`, and `<policy>.vs_baseline.
    <metric>` (paired difference)."""
    out: list[tuple[str, float, int]] = []
    for name, s in summaries.items():
        for key, e in s.metrics.items():
            out += [(f"{name}.{key}", e.value, 0), (f"{name}.{key}.lo", e.lo, 0)]
            out.append((f"{name}.{key}.hi", e.hi, 0))
        for key in (COMPLETION, TRIGGERS_PER_USER_DAY):
            out.append((f"{name}.vs_baseline.{key}", s.diff[key].value, 0))
            out.append((f"{name}.relative.{key}", s.relative[key].value, 0))
    return out


def per_seed_series(
    results: Sequence[RunResult], seeds: Sequence[int]
) -> list[tuple[str, float, int]]:
    """MLflow metric history: each policy's per-seed values, step = the seed's index."""
    index = {seed: i for i, seed in enumerate(seeds)}
    return [
        (f"{r.policy}.{key}.per_seed", value, index[r.seed])
        for r in results
        for key, value in r.metrics.items()
        if key in (COMPLETION, TRIGGERS_PER_USER_DAY)
    ]


def headline_sentence(summaries: Mapping[str, PolicySummary], baseline: str, headline: str) -> str:
    s, b = summaries[headline], summaries[baseline]
    return (
        f"{headline}: completion {pct(s.metrics[COMPLETION])} vs {baseline} "
        f"{pct(b.metrics[COMPLETION])} ({signed_pct(s.relative[COMPLETION])})"
    )


def write_files(
    folder: Path,
    markdown: str,
    runs: pd.DataFrame,
    estimates: str,
    png: bytes,
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        SUMMARY_FILE: markdown,
        RUNS_FILE: runs.to_csv(index=False),
        ESTIMATES_FILE: estimates,
    }
    written = []
    for name, text in paths.items():
        (folder / name).write_text(text)
        written.append(folder / name)
    (folder / FUNNEL_FILE).write_bytes(png)
    written.append(folder / FUNNEL_FILE)
    return written
