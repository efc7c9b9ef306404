"""`intent monitor`: training vs serving, per feature, from the decision log (HTML + MLflow).

The served model's bundle carries the reference profile of its training window
(`core.profile`); the decision log keeps, per model decision, the merged signals and the
request context the model scored. The rows of a recent window are rebuilt exactly as the
server's drift monitor builds them (`serving.drift.feature_row`), encoded by the bundle,
binned on the profile's cut points and compared bin by bin: the same PSI as the live
`intent_feature_psi` gauges (`serving.drift.drift_report`), over a longer window and with a
plot per feature. PSI and the bins come from `core.profile` (scipy's `rel_entr`); the report
is plain HTML with matplotlib PNGs (`loop.plots`), like `intent report`.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.bundle import Bundle
from core.layout import Layout
from core.profile import ColumnProfile, ReferenceProfile, bin_shares, load_profile
from serving.drift import DriftReport, drift_report, feature_row

REPORT_FILE = "monitor.html"
PSI_FILE = "psi.csv"
LOG_COLUMNS = ("source", "model_version", "score", "signals", "step", "device", "channel", "moment")


class MonitorError(ValueError):
    """Nothing to monitor: no served model, no profile, or no model decisions in the window."""


@dataclass(frozen=True)
class MonitorResult:
    folder: Path
    model_version: str
    rows: int
    report: DriftReport
    threshold: float
    run_id: str | None


def served_rows(decisions: pd.DataFrame, model_version: str) -> tuple[list[dict], np.ndarray]:
    """The feature rows and scores of `model_version`'s model decisions in a log frame."""
    mine = decisions[
        (decisions["source"] == "model") & (decisions["model_version"] == model_version)
    ]
    rows = []
    for signals, step, device, channel, moment in zip(
        mine["signals"], mine["step"], mine["device"], mine["channel"], mine["moment"], strict=True
    ):
        values = {k: v for k, v in json.loads(signals or "{}").items() if v is not None}
        rows.append(feature_row(values, (step, device, channel, moment)))
    return rows, mine["score"].astype("float64").to_numpy()


def bin_labels(col: ColumnProfile, bundle: Bundle | None = None) -> list[str]:
    """Readable bin names: numeric ranges, category names (when the bundle knows them)."""
    if col.kind == "numeric":
        edges = [-math.inf, *col.edges, math.inf]
        labels = [f"[{_num(a)}, {_num(b)})" for a, b in itertools.pairwise(edges)]
    else:
        names = _category_names(bundle, col.name) if bundle is not None else {}
        labels = [names.get(int(code), f"code {int(code)}") for code in col.edges]
    return [*labels, "missing / unseen"]


def _num(x: float) -> str:
    return "-inf" if x == -math.inf else "inf" if x == math.inf else f"{x:.3g}"


def _category_names(bundle: Bundle, feature: str) -> dict[int, str]:
    """{code: category} from the manifest's encodings."""
    return {code: name for name, code in bundle.manifest.encodings.get(feature, {}).items()}


def shares_plot(labels: Sequence[str], expected: Sequence[float], actual: Sequence[float],
                title: str) -> bytes:  # fmt: skip
    """Training vs serving share per bin, side by side (PNG)."""
    from loop.plots import _figure, _png

    fig, ax = _figure(7.5, 2.8)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, np.asarray(expected) * 100, 0.4, label="training", color="#999999")
    ax.bar(x + 0.2, np.asarray(actual) * 100, 0.4, label="serving", color="#4a78b5")
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("share (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def render(
    profile: ReferenceProfile,
    matrix: np.ndarray,
    scores: np.ndarray,
    report: DriftReport,
    *,
    bundle: Bundle | None,
    threshold: float,
    facts: dict[str, str],
) -> str:
    """The report: a PSI table (worst first) and one plot per feature and for the score."""
    from loop.html_report import _img

    columns = [*profile.features, profile.score]
    served = [*(matrix[:, i] for i in range(len(profile.features))), scores]
    psis = [*(report.feature_psi[c.name] for c in profile.features), report.score_psi]
    order = sorted(range(len(columns)), key=lambda i: -psis[i])
    rows = "".join(
        f"<tr><td>{html.escape(columns[i].name)}</td><td>{psis[i]:.3f}</td>"
        f"<td>{'over threshold' if psis[i] > threshold else ''}</td></tr>"
        for i in order
    )
    plots = []
    for i in order:
        col = columns[i]
        actual = bin_shares(served[i], col)
        title = f"{col.name}: PSI {psis[i]:.3f}"
        png = shares_plot(bin_labels(col, bundle), col.shares, actual, title)
        plots.append(f'<section id="f-{html.escape(col.name)}">{_img(png, title)}</section>')
    fact_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts.items()
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>Drift monitor</title>',
            "<style>body{font:14px system-ui,sans-serif;margin:1.5em;max-width:1000px}"
            "td{padding:2px 10px}table{border-collapse:collapse}</style></head><body>",
            "<h1>Training vs serving</h1>",
            f"<table>{fact_rows}</table>",
            f"<h2>PSI per feature (threshold {threshold})</h2>",
            '<table id="psi"><tr><th>feature</th><th>PSI</th><th></th></tr>' + rows + "</table>",
            "<p>0.1 = watch, 0.25 = act. Bins: the training window's deciles (numeric) or "
            "categories, plus a missing / unseen bin.</p>",
            *plots,
            "</body></html>",
        ]
    )


def run_monitor(
    layout: Layout, *, window: str | None, log_path: Path | None, mlflow: bool, stamp: str
) -> MonitorResult:
    """Read the window, compare it with the served bundle's profile, write and log the report."""
    from core.registry import choose_model
    from core.settings import load_config
    from loop.logs import describe, open_decision_log
    from serving.config import ServingConfig

    cfg = load_config(ServingConfig, layout=layout)
    dash = cfg.dashboard
    window = window or dash.default_window
    if window not in dash.windows_h:
        raise MonitorError(f"--window must be one of {', '.join(dash.windows_h)}")
    bundle = choose_model(cfg.model, layout).bundle
    if bundle is None or bundle.path is None:
        raise MonitorError(
            "no served model (no champion, no bundle in models/): nothing to compare"
        )
    profile = load_profile(bundle.path, bundle.manifest.reference_profile_sha256)
    if profile is None:
        raise MonitorError(
            f"model {bundle.version} has no reference profile (exported before profiles "
            "existed): retrain and export it"
        )
    now = datetime.now(UTC).timestamp()
    since = now - dash.windows_h[window] * 3600.0
    log = open_decision_log(cfg, layout, log_path)
    try:
        recent = log.recent(since, list(LOG_COLUMNS), dash.max_rows)
    finally:
        log.close()
    rows, scores = served_rows(recent.decisions, bundle.version)
    if not rows:
        raise MonitorError(
            f"no decisions of model {bundle.version} in the last {window} of "
            f"{describe(cfg, layout, log_path)}"
        )
    matrix = bundle.vectorize(rows)
    report = drift_report(profile, matrix, scores, bundle.version)
    facts = {
        "model": f"{bundle.manifest.model_name} version {bundle.version}",
        "training window": json.dumps(bundle.manifest.training_window.model_dump(mode="json")),
        "serving window": f"last {window}, {len(rows):,} model decisions"
        + (" (row limit reached)" if recent.truncated else ""),
        "decision log": describe(cfg, layout, log_path),
        "written": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
    }
    page = render(profile, matrix, scores, report, bundle=bundle,
                  threshold=cfg.drift.threshold, facts=facts)  # fmt: skip
    folder = layout.reports / "monitor" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_FILE).write_text(page)
    psi = pd.DataFrame(
        {"feature": [*report.feature_psi, "score"],
         "psi": [*report.feature_psi.values(), report.score_psi]}
    )  # fmt: skip
    psi.to_csv(folder / PSI_FILE, index=False)
    run_id = None
    if mlflow:
        run_id = _log_to_mlflow(layout, cfg, bundle, report, folder, window, stamp)
    return MonitorResult(folder, bundle.version, len(rows), report, cfg.drift.threshold, run_id)


def _log_to_mlflow(layout, cfg, bundle, report, folder: Path, window: str, stamp: str) -> str:
    """A `monitor` run (metrics: PSI per feature) linked to the champion's training run,
    whose artifacts also get the report under `monitor/<stamp>/`."""
    from mlflow import MlflowClient

    from core.registry import tracking_uri
    from core.settings import load_config
    from loop.config import LoopConfig
    from loop.tracking import log_run

    champion_run = bundle.manifest.run_id
    files = [folder / REPORT_FILE, folder / PSI_FILE]
    metrics = [(f"psi.{k}", v, 0) for k, v in report.feature_psi.items()]
    run_id = log_run(
        layout,
        cfg.model,
        load_config(LoopConfig, layout=layout).report.mlflow_experiment,
        run_name=f"monitor-{stamp}",
        kind="monitor",
        params={"model_version": bundle.version, "window": window, "rows": report.rows},
        metrics=[*metrics, ("psi.score", report.score_psi, 0)],
        artifacts=files,
        tags={"intent.champion_run": champion_run or "-"},
    )
    if champion_run:
        uri = tracking_uri(cfg.model, layout)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        for path in files:
            client.log_artifact(champion_run, str(path), artifact_path=f"monitor/{stamp}")
    return run_id


def describe_result(result: MonitorResult) -> list[str]:
    """The lines the command prints."""
    name, worst = result.report.worst
    threshold = result.threshold
    lines = [
        f"model {result.model_version}: {result.rows:,} model decisions; worst PSI {worst:.3f} "
        f"({name}){' - over the threshold ' + str(threshold) if worst > threshold else ''}",
        f"report: {result.folder / REPORT_FILE}",
    ]
    if result.run_id:
        lines.append(f"MLflow run: {result.run_id}")
    return lines
