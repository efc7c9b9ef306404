"""`intent policy explore | learn | ope`: thin commands over `training.policy.jobs`.

Heavy imports (VW, scikit-learn, MLflow, the simulator) happen inside the commands. Errors a
user can cause - no log yet, no champion, no artefact, a bad config - print one line and
exit 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core import cli_kit as kit
from core.layout import Layout

out = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the `policy` group to the `intent` app."""
    group = kit.group(app, "policy", "Policy learning: exploration, the contextual bandit, OPE.")
    kit.command(group, "explore", explore_command)
    kit.command(group, "learn", learn_command)
    kit.command(group, "ope", ope_command)
    kit.command(group, "tune", tune_command)


@contextmanager
def _user_errors() -> Iterator[None]:
    from core.bandit import PolicyArtefactError
    from core.settings import ConfigError
    from loop.evaluate import EvaluationError
    from training.policy.data import PolicyDataError

    with kit.user_errors(PolicyDataError, PolicyArtefactError, EvaluationError, ConfigError):
        yield


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


LogOpt = Annotated[
    Path | None,
    typer.Option("--log", help="SQLite decision log (default: the newest `policy explore`)."),
]
EventsOpt = Annotated[
    Path | None, typer.Option("--events", help="Events parquet of that log (completions).")
]


def explore_command(
    epsilon: Annotated[
        float, typer.Option("--epsilon", "-e", min=0.0, max=1.0, help="Exploration share.")
    ] = 0.3,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0, help="Held-out seed.")] = 2001,
    users: Annotated[int | None, typer.Option("--users", "-n", min=1)] = None,
    days: Annotated[int | None, typer.Option("--days", min=1)] = None,
) -> None:
    """Simulate users through the served engine with exploration on: a learnable log."""
    from training.policy.jobs import explore

    layout = Layout.from_env()
    with _user_errors(), kit.stages() as stage:
        stage(f"simulating with epsilon {epsilon:g} (seed {seed})")
        folder = explore(layout, epsilon, seed, users, days, _stamp())
    out.print(f"log: {folder / 'decisions.db'}", highlight=False, soft_wrap=True)
    out.print(f"events: {folder / 'events.parquet'}", highlight=False, soft_wrap=True)


def learn_command(
    log: LogOpt = None,
    events: EventsOpt = None,
    eval_share: Annotated[
        float,
        typer.Option("--eval-share", min=0.05, max=0.9, help="Users kept out of training for OPE."),
    ] = 0.3,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow")] = True,
) -> None:
    """Learn the VW contextual bandit from a decision log; write the artefact; OPE it."""
    from training.policy.jobs import learn

    layout = Layout.from_env()
    with _user_errors(), kit.stages() as stage:
        stage("learning the contextual bandit")
        result = learn(layout, log, events, eval_share=eval_share, mlflow=mlflow)
    m = result.manifest
    out.print(
        f"learned policy {m['version']} from {m['rows']:,} model-scored decisions of "
        f"{result.source} ({m['data_window']['start']} .. {m['data_window']['end']})",
        highlight=False,
        soft_wrap=True,
    )
    _print_estimates(result.ope.estimates, f"OPE on {result.ope.users:,} held-out users")
    out.print(f"artefact: {result.artefact}", highlight=False, soft_wrap=True)
    if result.run_id:
        out.print(f"MLflow run: {result.run_id}", highlight=False)


def ope_command(
    log: LogOpt = None,
    events: EventsOpt = None,
    artefact: Annotated[
        str | None, typer.Option("--artefact", help="Learned policy folder name (default: newest).")
    ] = None,
    truth_seed: Annotated[
        int | None,
        typer.Option("--truth-seed", min=0, help="Also simulate the candidates on this seed."),
    ] = None,
    users: Annotated[int | None, typer.Option("--users", "-n", min=1)] = None,
    days: Annotated[int | None, typer.Option("--days", min=1)] = None,
) -> None:
    """IPS, SNIPS and DR estimates of none / table / learned from a logged decision log."""
    from core.bandit import BanditConfig
    from core.settings import load_config
    from training.policy.jobs import (
        load_learned,
        policy_data,
        read_bandit_log,
        run_ope,
        simulated_truth,
        versus_truth,
    )

    layout = Layout.from_env()
    stamp = _stamp()
    folder = layout.reports / "policy-ope" / stamp
    with _user_errors(), kit.stages() as stage:
        cfg = load_config(BanditConfig, layout=layout)
        stage("reading the log")
        rows, source = read_bandit_log(layout, log, events, cfg)
        learned = load_learned(layout, artefact)
        stage(f"estimating ({len(rows.frame):,} decisions)")
        try:
            result = run_ope(rows, cfg, learned)
        finally:
            if learned is not None:
                learned.close()
        folder.mkdir(parents=True, exist_ok=True)
        result.estimates.to_csv(folder / "estimates.csv", index=False)
        compared = None
        if truth_seed is not None:
            stage(f"simulating the candidates on seed {truth_seed}")
            truth = simulated_truth(
                layout,
                truth_seed,
                users,
                days,
                policy_data(layout) / "truth" / stamp,
                learned is not None,
            )
            compared = versus_truth(result.estimates, truth)
            compared.to_csv(folder / "versus_truth.csv", index=False)
    out.print(f"log: {source} ({result.rows:,} decisions, {result.users:,} users)", highlight=False)
    _print_estimates(result.estimates, "off-policy estimates per decision")
    for name, diag in result.diagnostics.items():
        out.print(
            f"{name}: {diag['matches']:.0f} matching decisions, effective sample "
            f"{diag['effective_sample_size']:.0f}, {diag['clipped']:.0f} weights clipped",
            highlight=False,
        )
    if compared is not None:
        _print_truth(compared)
    out.print(f"written: {folder}", highlight=False, soft_wrap=True)


def _print_estimates(frame, title: str) -> None:
    table = Table(title=title)
    for col in ("candidate", "estimator", "completed", "shown", "reward"):
        table.add_column(col, justify="left" if col in ("candidate", "estimator") else "right")
    for (cand, est), part in frame.groupby(["candidate", "estimator"], sort=False):
        cells = []
        for outcome in ("completed", "shown", "reward"):
            r = part[part["outcome"] == outcome].iloc[0]
            cells.append(f"{r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
        table.add_row(cand, est, *cells)
    out.print(table)


def _print_truth(compared) -> None:
    table = Table(title="estimate vs simulated truth (per decision)")
    for col in ("candidate", "estimator", "outcome", "estimate", "truth", "covered"):
        table.add_column(col)
    for r in compared.itertuples():
        table.add_row(
            r.candidate,
            r.estimator,
            r.outcome,
            f"{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]",
            f"{r.truth:.3f}",
            "yes" if r.covered else "no",
        )
    out.print(table)


def tune_command(
    log: LogOpt = None,
    events: EventsOpt = None,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Overlay file to write, e.g. configs/overlays/tuned.yaml (default: "
            "data/policy/tune/<stamp>/policy_cohorts.yaml).",
        ),
    ] = None,
) -> None:
    """Per device x returning cohort: the assist threshold that maximises completion (DR),
    written as a policy overlay that policy.yaml or an experiment arm can include."""
    from training.policy.jobs import policy_data, tune_cohorts

    layout = Layout.from_env()
    target = out_path or policy_data(layout) / "tune" / _stamp() / "policy_cohorts.yaml"
    with _user_errors(), kit.stages() as stage:
        stage("tuning cohort thresholds")
        result = tune_cohorts(layout, log, events, target)
    table = Table(title=f"cohort thresholds from {result.source}")
    for col in ("cohort", "decisions", "threshold", "current (DR)", "tuned (DR)"):
        table.add_column(col)
    for c in result.choices:
        cur, new = c.current, c.tuned
        table.add_row(
            f"{c.device} / {'returning' if c.returning else 'new'}",
            f"{c.decisions:,}",
            "keep" if c.threshold is None else f"{c.threshold:g}",
            f"{cur['completed']:.3f} @ {cur['shown']:.3f}",
            f"{new['completed']:.3f} [{new['completed_low']:.3f}, {new['completed_high']:.3f}]"
            f" @ {new['shown']:.3f}",
        )
    out.print(table)
    out.print(f"overlay: {result.overlay}", highlight=False, soft_wrap=True)
