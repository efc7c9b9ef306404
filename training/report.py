"""The markdown report of a monthly retrain, rendered from what the MLflow runs recorded."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

# (label, metric suffix) rows of the metrics table; columns are the model and its baselines.
METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("ROC-AUC", "test_roc_auc"),
    ("PR-AUC", "test_pr_auc"),
    ("log loss", "test_log_loss"),
    ("Brier", "test_brier"),
    ("ECE", "test_ece"),
    ("lift @ top decile", "test_lift_top_decile"),
    ("recall @ top decile", "test_recall_top_decile"),
)
SCORERS: tuple[tuple[str, str], ...] = (
    ("model", ""),
    ("rules", "rules_"),
    ("step prior", "step_prior_"),
    ("step x moment", "step_moment_"),
    ("logistic", "logistic_"),
    ("oracle", "oracle_"),
)
STEP_COLUMNS: tuple[str, ...] = (
    "step",
    "model",
    "best baseline",
    "oracle",
    "model / oracle",
    "baseline / oracle",
)


def step_rows(metrics: Mapping[str, float], split: str = "test") -> list[list[str]]:
    """Per-step ROC-AUC of the model, the strongest baseline and the oracle, and the
    within-step ratios to the oracle, as table cells (see STEP_COLUMNS)."""
    marker = f"{split}_roc_auc.step."
    rows = []
    for key in sorted(k for k in metrics if k.startswith(marker)):
        step = key[len(marker) :]
        cells = [
            metrics.get(key),
            metrics.get(f"best_baseline_{split}_roc_auc.step.{step}"),
            metrics.get(f"oracle_{split}_roc_auc.step.{step}"),
            metrics.get(f"{split}_step_ratio_oracle.step.{step}"),
            metrics.get(f"best_baseline_{split}_step_ratio_oracle.step.{step}"),
        ]
        rows.append([step, *(fmt_metric(c) for c in cells)])
    return rows


def markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


@dataclass(frozen=True)
class ReportInputs:
    as_of: date
    window_days: int
    model_name: str
    experiment: str
    tracking_uri: str
    run_id: str
    version: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    behaviour: str
    signal: str  # training.guards: "signal", or "no_signal: <reasons>"
    best_baseline: str
    promotion: str  # one line: decision and champion before / after
    promotion_reasons: list[str]
    reused: bool


def fmt_metric(value: float | None) -> str:
    """A metric for a table cell: 4 decimals, `-` when missing or not finite."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def render_report(r: ReportInputs) -> str:
    p, m = r.params, r.metrics
    scorers = [(n, pre) for n, pre in SCORERS if f"{pre}test_roc_auc" in m]
    lines = [
        f"# Retrain as of {r.as_of.isoformat()}",
        "",
        f"- window: the {r.window_days} days of decision points before {r.as_of.isoformat()}; "
        f"training from {p.get('training_window_start', '?')[:10]}, validation from "
        f"{p.get('validation_start', '?')[:10]}, test {p.get('test_start', '?')[:10]} .. "
        f"{p.get('test_end', '?')[:10]}",
        f"- rows: train {p.get('rows_train')}, validation {p.get('rows_validation')}, "
        f"test {p.get('rows_test')} ({p.get('rows_purged')} purged so no user crosses splits)",
        f"- model: `{r.model_name}` version {r.version}, run `{r.run_id}`, "
        f"{p.get('best_iteration')} trees, calibration {p.get('calibration')}",
        f"- behavioural checks: {r.behaviour}",
        f"- signal: {r.signal}; strongest baseline on test: {r.best_baseline}, model "
        f"{fmt_metric(m.get('test_roc_auc_minus_best_baseline'))} AUC above it",
        f"- promotion: {r.promotion}",
    ]
    lines += [f"  - {reason}" for reason in r.promotion_reasons]
    if r.reused:
        lines.append("- this as-of date was already trained: the existing run was reused")
    lines += ["", "## Test window", ""]
    lines.append("| metric | " + " | ".join(n for n, _ in scorers) + " |")
    lines.append("|---|" + "---:|" * len(scorers))
    for label, suffix in METRIC_ROWS:
        cells = [fmt_metric(m.get(f"{pre}{suffix}")) for _, pre in scorers]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "test_auc_ratio_oracle" in m:
        lines += ["", f"AUC(model) / AUC(oracle) = {fmt_metric(m['test_auc_ratio_oracle'])}"]
    steps = step_rows(m)
    if steps:
        lines += ["", "## ROC-AUC within each step", ""]
        lines += markdown_table(STEP_COLUMNS, steps)
    lines += [
        "",
        "## Compare runs",
        "",
        f"`mlflow ui --backend-store-uri {r.tracking_uri}`, experiment `{r.experiment}`: "
        "select this run and the champion's, then *Compare*.",
        "",
    ]
    return "\n".join(lines)
