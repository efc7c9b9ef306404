"""`intent train`, `intent promote`, `intent retrain` and `intent bench train`.

LightGBM, MLflow and Feast are imported inside the commands so `intent --help` stays fast.
Errors a user can cause (no features yet, no challenger, bad dates, a tracking server that
is down) print one line and exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.table import Table

from core import cli_kit as kit
from core.layout import Layout
from training.config import EvaluationConfig, TrackingBackend
from training.report import METRIC_ROWS, SCORERS, STEP_COLUMNS, fmt_metric, step_rows

if TYPE_CHECKING:
    from training.pipeline import TrainingConfigs
    from training.promote import PromotionResult
    from training.run import TrainOutcome

out = kit.console()
err = kit.console(stderr=True)

BackendOption = Annotated[
    TrackingBackend | None,
    typer.Option("--backend", help="Tracking store (default: configs/training.yaml)."),
]


def register(app: typer.Typer) -> None:
    """Add `train`, `promote`, `retrain` and `bench train` to the `intent` app."""
    app.command("train")(train_command)
    app.command("promote")(promote_command)
    app.command("retrain")(retrain_command)
    kit.group(app, "bench", kit.BENCH_HELP).command("train")(bench_train_command)


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """MLflow logs store migrations and environment guesses, SQLAlchemy warns about MLflow's
    mappers: none of it is for the user of these commands, who gets our own output."""
    import logging
    import warnings

    import mlflow  # configures its loggers on import: import it first, then quiet them

    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    mlflow_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"mlflow\.")
        warnings.filterwarnings("ignore", "The ``noload`` loader strategy")
        # MLflow's store configures its mappers (and SQLAlchemy warns) once, on import: do it
        # now, before Feast's imports can put their own warning filters in front of ours.
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        try:
            yield
        finally:
            mlflow_log.setLevel(level)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can cause: one line on stderr, exit 1, no traceback (library noise off)."""
    from core.bundle import BundleError
    from core.registry import RegistryUnavailable
    from core.settings import ConfigError
    from features.store.definitions import FeatureTableError
    from training.export import ParityError
    from training.frame import TrainingError
    from training.tracking import TrackingError

    kinds = (
        TrainingError,
        TrackingError,
        ParityError,
        BundleError,
        RegistryUnavailable,
        FeatureTableError,
        ConfigError,
    )
    with kit.user_errors(*kinds), _quiet_libraries():
        yield


def _configs(layout: Layout, backend: TrackingBackend | None, seed: int | None = None):
    from training.pipeline import TrainingConfigs

    configs = TrainingConfigs.load(layout)
    changes: dict[str, dict] = {}
    if backend is not None:
        changes["tracking"] = {"backend": backend}
    if seed is not None:
        changes["lightgbm"] = {"seed": seed}
    if changes:
        configs = TrainingConfigs(
            configs.training.override(**changes), configs.features, configs.heuristic
        )
    return configs


# --- intent train --------------------------------------------------------------------------


def train_command(
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="LightGBM seed.")] = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Run the promotion gate right after.")
    ] = False,
    backend: BackendOption = None,
) -> None:
    """Train on the Feast point-in-time frame, log to MLflow, export ONNX, register challenger."""
    from training.pipeline import train_from_store
    from training.promote import promote as run_promote

    layout = Layout.from_env()
    with _user_errors():
        configs = _configs(layout, backend, seed)
        with kit.stages() as stage:
            outcome = train_from_store(layout, configs, on_stage=stage)
            result = run_promote(layout, configs.training) if promote else None
    out.print(training_table(outcome, configs))
    out.print(signal_message(outcome), highlight=False)
    if result is not None:
        out.print(promotion_line(result, configs), highlight=False)


def training_table(outcome: TrainOutcome, configs: TrainingConfigs) -> Group:
    """Model vs rules vs oracle on the test window, then what the run produced."""
    m = outcome.metrics
    f = outcome.fitted
    scorers = [(name, prefix) for name, prefix in SCORERS if f"{prefix}test_roc_auc" in m]
    reg = configs.training.registry
    metrics = Table(
        title=f"{reg.model_name} v{outcome.version} ({reg.challenger_alias}), test window",
        title_justify="left",
    )
    metrics.add_column("metric")
    for name, _ in scorers:
        metrics.add_column(name, justify="right")
    for label, key in METRIC_ROWS:
        metrics.add_row(label, *(fmt_metric(m.get(prefix + key)) for _, prefix in scorers))
    sizes = f.split.sizes()
    facts = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    facts.add_column("what", style="dim")
    facts.add_column("value")
    if "test_auc_ratio_oracle" in m:
        facts.add_row("AUC(model) / AUC(oracle)", fmt_metric(m["test_auc_ratio_oracle"]))
    facts.add_row("rows train / validation / test", " / ".join(f"{sizes[s]:,}" for s in sizes))
    facts.add_row("rows purged (user in 2 windows)", f"{f.split.purged:,}")
    margin = fmt_metric(m.get("test_roc_auc_minus_best_baseline"))
    facts.add_row(
        "strongest baseline (test)", f"{f.evaluation.best_baseline}, model {margin} AUC above it"
    )
    if "test_ece_ci_low" in m:
        facts.add_row("ECE interval (model)", ece_line(m, "", configs.training.evaluation))
    if "oracle_test_ece_ci_low" in m:
        facts.add_row("ECE interval (oracle)", ece_line(m, "oracle_", configs.training.evaluation))
    facts.add_row("trees (early stopping)", str(f.best_iteration))
    note = f.calibration_choice.note if f.calibration_choice else f.calibration.kind
    facts.add_row("calibration", note)
    facts.add_row("fit time", f"{f.seconds['fit']:.2f} s ({f.train_rows_per_s:,.0f} rows/s)")
    facts.add_row("ONNX parity (max abs diff)", f"{outcome.parity.max_abs_diff:.2e}")
    facts.add_row("behavioural checks", _behaviour(outcome))
    facts.add_row("MLflow run", outcome.run_id)
    facts.add_row("bundle", str(outcome.bundle_dir))
    steps = Table(title="ROC-AUC within each step, test window", title_justify="left")
    for i, name in enumerate(STEP_COLUMNS):
        steps.add_column(name, justify="left" if i == 0 else "right")
    for row in step_rows(m):
        steps.add_row(*row)
    return Group(metrics, steps, facts)


def ece_line(metrics: dict[str, float], prefix: str, cfg: EvaluationConfig) -> str:
    """'0.0137 [0.0103, 0.0194], noise floor 0.0068': the test ECE, its bootstrap interval
    and what a perfectly calibrated model would measure on the same rows."""
    ece, low, high, floor = (
        fmt_metric(metrics.get(f"{prefix}test_{k}"))
        for k in ("ece", "ece_ci_low", "ece_ci_high", "ece_floor")
    )
    return (
        f"{ece} [{low}, {high}] ({cfg.ece_confidence:.0%} bootstrap, {cfg.ece_bins} "
        f"{cfg.ece_binning.replace('_', '-')} bins); noise floor {floor}"
    )


def signal_message(outcome: TrainOutcome) -> str:
    """The guards' verdict, plainly: a no_signal run is registered but never promotable."""
    verdict = outcome.fitted.signal
    if verdict is not None and verdict.ok:
        return (
            f"signal: the model beats every baseline on validation ({verdict.margin:+.4f} AUC "
            f"over {verdict.best_baseline}, DeLong standard error {verdict.margin_se:.4f}; "
            f"lowest one-sided lower bound over the baselines {verdict.margin_lower:+.4f})"
        )
    if verdict is None:
        return "signal: the model beats every baseline on validation"
    lines = [
        f"NO SIGNAL: version {outcome.version} is recorded (MLflow tag intent.signal=no_signal)"
        " but `intent promote` will refuse it; the server keeps the current champion or rules."
    ]
    return "\n".join(lines + [f"  - {reason}" for reason in verdict.reasons])


def _behaviour(outcome: TrainOutcome) -> str:
    failed = [c.name for c in outcome.fitted.behaviour if not c.passed]
    return "all passed" if not failed else "FAILED: " + ", ".join(failed)


# --- intent promote ------------------------------------------------------------------------


def promote_command(
    version: Annotated[
        str | None,
        typer.Option("--version", help="Candidate version (default: the challenger alias)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the gate fails (recorded).")
    ] = False,
    backend: BackendOption = None,
) -> None:
    """Compare challenger and champion on the latest test window; move `champion` if not worse."""
    from training.promote import promote

    layout = Layout.from_env()
    with _user_errors():
        configs = _configs(layout, backend)
        with kit.stages() as stage:
            stage("scoring challenger and champion on the same test window")
            result = promote(layout, configs.training, version=version, force=force)
    out.print(promotion_line(result, configs), highlight=False)
    if result.decision is not None:
        out.print(comparison_table(result))
    for reason in result.reasons:
        out.print(f"  - {reason}", highlight=False)


def promotion_line(result: PromotionResult, configs: TrainingConfigs) -> str:
    reg = configs.training.registry
    if result.run_id is None:
        return f"nothing to do: {result.note}"
    verdict = "promoted" if result.promoted else "not promoted"
    return (
        f"{verdict}: {reg.model_name}@{reg.champion_alias} = v{result.champion_after} "
        f"(was {'v' + result.champion_before if result.champion_before else 'none'}); "
        f"{result.note}; comparison run {result.run_id}"
    )


def comparison_table(result: PromotionResult) -> Table:
    d = result.decision
    table = Table(title=f"test window, {result.window_rows:,} rows", title_justify="left")
    for name in ("segment", "rows", f"v{result.champion_before}", f"v{result.challenger}", "delta"):
        table.add_column(name, justify="left" if name == "segment" else "right")
    table.add_row(
        "overall",
        f"{result.window_rows:,}",
        fmt_metric(d.champion_auc),
        fmt_metric(d.challenger_auc),
        f"{d.auc_delta:+.4f}",
    )
    for s in d.segments:
        table.add_row(
            f"{s.segment}={s.value}",
            f"{s.rows:,}",
            fmt_metric(s.champion_auc),
            fmt_metric(s.challenger_auc),
            f"{s.delta:+.4f}",
        )
    return table


# --- intent retrain ------------------------------------------------------------------------


def retrain_command(
    as_of: Annotated[
        datetime,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="Train on data before this date."),
    ],
    window_days: Annotated[
        int | None,
        typer.Option("--window-days", min=1, help="Days of data (default: training.yaml)."),
    ] = None,
    backend: BackendOption = None,
) -> None:
    """Monthly retrain: build the window's features, train, register, promote, report."""
    from training.retrain import retrain

    layout = Layout.from_env()
    with _user_errors():
        configs = _configs(layout, backend)
        days = window_days or configs.training.retrain.window_days
        with kit.stages() as stage:
            result = retrain(
                layout,
                configs.training,
                configs.features,
                configs.heuristic,
                as_of.date(),
                days,
                on_stage=stage,
            )
    reg = configs.training.registry
    if result.reused:
        out.print(
            f"as of {result.as_of}: already trained (run {result.run_id}, "
            f"{reg.model_name} v{result.version}); nothing new registered",
            highlight=False,
        )
    else:
        out.print(
            f"as of {result.as_of}: trained {reg.model_name} v{result.version} "
            f"(run {result.run_id})",
            highlight=False,
        )
    if result.promotion is not None:
        out.print(promotion_line(result.promotion, configs), highlight=False)
    out.print(f"report: {result.report}", highlight=False, soft_wrap=True)


# --- intent bench train --------------------------------------------------------------------


def bench_train_command(
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Fits to time.")] = 1,
) -> None:
    """Time the point-in-time frame, LightGBM fit and ONNX export on the layout's features."""
    from bench.training import bench_training

    layout = Layout.from_env()
    with _user_errors():
        configs = _configs(layout, None)
        with kit.stages() as stage:
            result = bench_training(layout, configs, repeat=repeat, on_stage=stage)
    typer.echo(json.dumps(result, indent=2))
