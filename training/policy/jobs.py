"""The jobs behind `intent policy explore | learn | ope`: data in, data out; the CLI prints.

- explore: simulate fresh users through the server's engine with the champion and an
  exploration epsilon (`loop`), keeping the decision log and events: a learnable log.
- learn: bandit rows from a log, VW trained on a share of the users, OPE of the result on the
  other users, the artefact under `models/policy/<version>/`, an MLflow run.
- ope: IPS / SNIPS / DR of the candidates (none, table, learned) on a log; with `truth_seed`,
  each engine candidate is also simulated on that seed and its own log measured, so every
  estimate stands next to the simulated truth.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.bandit import BanditConfig, LearnedPolicy, resolve_artefact
from core.layout import Layout
from core.settings import load_config
from training.policy.data import BanditLog, PolicyDataError, bandit_log
from training.policy.ope import (
    Estimate,
    deterministic,
    estimates_frame,
    evaluate,
    fit_reward_model,
    on_policy,
)

EXPLORE_DIR = "explore"  # under layout.data / "policy"
LOG_FILE = "decisions.db"
EVENTS_FILE = "events.parquet"


def policy_data(layout: Layout) -> Path:
    return layout.data / "policy"


# --- reading a log ---------------------------------------------------------------------------


def newest_explore_run(layout: Layout) -> Path:
    root = policy_data(layout) / EXPLORE_DIR
    runs = sorted(p.parent for p in root.glob(f"*/*/{LOG_FILE}")) if root.is_dir() else []
    if not runs:
        raise PolicyDataError(
            f"no exploration log under {root}: run `intent policy explore` first, or pass "
            "--log FILE --events FILE"
        )
    return runs[-1]


def read_bandit_log(
    layout: Layout, log_path: Path | None, events_path: Path | None, cfg: BanditConfig
) -> tuple[BanditLog, str]:
    """The bandit rows of a SQLite decision log and its events (default: the newest
    `intent policy explore` run); returns them and where they came from."""
    from features.config import SignalsConfig
    from loop.efficacy_cli import read_completion_events
    from loop.logs import LogSourceError, read_log_file

    if log_path is None:
        run = newest_explore_run(layout)
        log_path, events_path = run / LOG_FILE, events_path or run / EVENTS_FILE
    if not Path(log_path).is_file():
        raise PolicyDataError(f"no decision log at {log_path}")
    decisions, outcomes = read_log_file(Path(log_path))
    if decisions.empty:
        raise PolicyDataError(f"{log_path} holds no decisions")
    first = float(decisions["ts"].min().timestamp())
    try:
        events = read_completion_events(layout, events_path, first)
    except LogSourceError as exc:
        raise PolicyDataError(str(exc)) from exc
    signals = load_config(SignalsConfig, layout=layout)
    rows = bandit_log(
        decisions, outcomes, events, horizon_s=signals.label_horizon_minutes * 60.0, cfg=cfg
    )
    return rows, str(log_path)


def user_split(users: Sequence[str], share: float, salt: str = "policy-ope") -> list[bool]:
    """True for users in the evaluation share (a salted hash: stable across runs)."""
    out = []
    for u in users:
        h = hashlib.blake2b(f"{salt}:{u}".encode(), digest_size=8).digest()
        out.append(int.from_bytes(h, "big") / 2.0**64 < share)
    return out


def subset(log: BanditLog, mask: Sequence[bool]) -> BanditLog:
    idx = [i for i, m in enumerate(mask) if m]
    frame = log.frame.iloc[idx].reset_index(drop=True)
    return BanditLog(frame, [log.contexts[i] for i in idx], log.censored)


# --- candidates and OPE ----------------------------------------------------------------------


def candidate_targets(
    log: BanditLog, cfg: BanditConfig, learned: LearnedPolicy | None
) -> dict[str, list[dict[str, float]]]:
    """none, table (the served table / model path) and, with a policy, learned."""
    from training.policy.learn import learned_choices

    frame = log.frame
    pairs = zip(frame["holdout"], frame["table_action"], strict=True)
    table = ["none" if h else a for h, a in pairs]
    targets = {"none": deterministic(["none"] * len(frame)), "table": deterministic(table)}
    if learned is not None:
        targets["learned"] = deterministic(learned_choices(learned, log, cfg))
    return targets


@dataclass(frozen=True)
class OpeResult:
    estimates: pd.DataFrame  # candidate, estimator, outcome, value, low, high
    diagnostics: dict[str, dict[str, float]]
    rows: int
    users: int


def run_ope(log: BanditLog, cfg: BanditConfig, learned: LearnedPolicy | None) -> OpeResult:
    model = fit_reward_model(log, cfg.reward.trigger_cost, seed=cfg.ope.bootstrap_seed)
    found: list[Estimate] = on_policy(log, cfg.ope)
    diagnostics = {}
    for name, target in candidate_targets(log, cfg, learned).items():
        estimates, diag = evaluate(name, log, target, model, cfg.ope)
        found += estimates
        diagnostics[name] = diag
    return OpeResult(
        estimates_frame(found), diagnostics, len(log.frame), log.frame["user_id"].nunique()
    )


# --- learn -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnResult:
    artefact: Path
    manifest: dict
    ope: OpeResult
    source: str
    run_id: str | None


def learn(
    layout: Layout,
    log_path: Path | None,
    events_path: Path | None,
    *,
    eval_share: float,
    mlflow: bool,
) -> LearnResult:
    """Train on the users outside `eval_share`, estimate on the others, write the artefact."""
    from training.policy.learn import manifest_for, train_vw, write_artefact

    cfg = load_config(BanditConfig, layout=layout)
    log, source = read_bandit_log(layout, log_path, events_path, cfg)
    held = user_split(log.frame["user_id"].tolist(), eval_share)
    train, test = subset(log, [not h for h in held]), subset(log, held)
    if test.frame.empty or train.frame.empty:
        raise PolicyDataError(
            f"{len(log.frame)} decisions are too few to split {eval_share:.0%} of users off for "
            "evaluation: simulate more users (`intent policy explore --users N`)"
        )
    ws = train_vw(train, cfg)
    manifest = manifest_for(train, cfg, int(train.frame["model_scored"].sum()))
    manifest["source_log"] = source
    try:
        folder = write_artefact(ws, layout.models, manifest)
    finally:
        ws.finish()
    policy = LearnedPolicy(folder)
    try:
        ope = run_ope(test, cfg, policy)
    finally:
        policy.close()
    full = json.loads((folder / "manifest.json").read_text())
    full["ope"] = {
        "eval_users": ope.users,
        "eval_rows": ope.rows,
        "estimates": ope.estimates.to_dict(orient="records"),
    }
    (folder / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
    run_id = _log_learn(layout, cfg, full, ope, folder) if mlflow else None
    return LearnResult(folder, full, ope, source, run_id)


def _log_learn(layout, cfg, manifest, ope: OpeResult, folder: Path) -> str:
    from loop.tracking import log_run, serving_model_source

    metrics = [
        (f"ope.{r.candidate}.{r.estimator}.{r.outcome}", float(r.value), 0)
        for r in ope.estimates.itertuples()
    ]
    params = {
        "vw_args": manifest["vw_args"],
        "passes": cfg.vw.passes,
        "trigger_cost": cfg.reward.trigger_cost,
        "data_start": manifest["data_window"]["start"],
        "data_end": manifest["data_window"]["end"],
        "train_rows": manifest["rows"],
        "eval_rows": ope.rows,
        "artefact": str(folder),
        "version": manifest["version"],
    }
    return log_run(
        layout,
        serving_model_source(layout),
        cfg.ope.mlflow_experiment,
        run_name=f"learn-{manifest['version']}",
        kind="policy-learn",
        params=params,
        metrics=metrics,
        artifacts=[folder / "manifest.json"],
    )


# --- explore / truth in simulation ----------------------------------------------------------


def simulate_runs(
    layout: Layout,
    specs: Sequence,
    seeds: Sequence[int],
    users: int | None,
    days: int | None,
    keep_root: Path,
    workers: int = 1,
):
    """Simulate `specs` on `seeds` through the server's engine, keeping each run's log and
    events under `keep_root/<policy>-s<seed>/`; returns the RunResults."""
    from loop.config import LoopConfig
    from loop.evaluate import Job, prepare, run_jobs

    loop = load_config(LoopConfig, layout=layout).evaluation
    changes: dict[str, object] = {"seeds": list(seeds)}
    if users is not None:
        changes["users"] = users
    if days is not None:
        changes["days"] = days
    cfg = loop.model_copy(update=changes)
    setup, _ = prepare(layout, cfg, specs)
    jobs = [Job(s, seed, keep_root / f"{s.name}-s{seed}") for s in specs for seed in seeds]
    return run_jobs(setup, jobs, workers)


def explore(
    layout: Layout, epsilon: float, seed: int, users: int | None, days: int | None, stamp: str
) -> Path:
    """One simulated month with exploration on; returns the folder with its log and events."""
    from loop.config import PolicyKind, PolicySpec

    spec = PolicySpec(name="explore", kind=PolicyKind.MODEL, caps=True, explore=epsilon)
    root = policy_data(layout) / EXPLORE_DIR / stamp
    (result,) = simulate_runs(layout, [spec], [seed], users, days, root)
    assert result.kept is not None
    return result.kept


def simulated_truth(
    layout: Layout, seed: int, users: int | None, days: int | None, root: Path, learned: bool
) -> pd.DataFrame:
    """Per-decision completion, trigger rate and reward of each candidate, run on `seed`:
    table (the served model policy) and learned from their own logs; none from the table
    run's global holdout (a random slice of users that never sees a trigger)."""
    from loop.config import PolicyKind, PolicySpec

    cfg = load_config(BanditConfig, layout=layout)
    specs = [PolicySpec(name="table", kind=PolicyKind.MODEL, caps=True)]
    if learned:
        specs.append(PolicySpec(name="learned", kind=PolicyKind.MODEL, caps=True, learned=True))
    results = simulate_runs(layout, specs, [seed], users, days, root)
    rows = []
    for result in results:
        assert result.kept is not None
        log, _ = read_bandit_log(layout, result.kept / LOG_FILE, result.kept / EVENTS_FILE, cfg)
        frame = log.frame
        parts = [(result.policy, frame[~frame["holdout"]])]
        if result.policy == "table":
            parts.append(("none", frame[frame["holdout"]]))
        for name, part in parts:
            rows.append(
                {
                    "candidate": name,
                    "decisions": len(part),
                    "completed": part["completed"].mean(),
                    "shown": part["shown"].mean(),
                    "reward": part["reward"].mean(),
                }
            )
    return pd.DataFrame(rows)


def versus_truth(estimates: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Each estimate next to the simulated truth of its candidate and outcome."""
    long = truth.melt(
        id_vars=["candidate", "decisions"],
        value_vars=["completed", "shown", "reward"],
        var_name="outcome",
        value_name="truth",
    )
    out = estimates.merge(long, on=["candidate", "outcome"], how="inner")
    out["covered"] = (out["low"] <= out["truth"]) & (out["truth"] <= out["high"])
    out["error"] = out["value"] - out["truth"]
    return out


def load_learned(layout: Layout, artefact: str | None) -> LearnedPolicy | None:
    """The named (or newest) learned policy, or None when there is none and none was named."""
    from core.bandit import PolicyArtefactError

    try:
        return LearnedPolicy(resolve_artefact(layout.models, artefact or "latest"))
    except PolicyArtefactError:
        if artefact is not None:
            raise
        return None


# --- tune ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneResult:
    choices: list
    overlay: Path
    source: str


def tune_cohorts(
    layout: Layout, log_path: Path | None, events_path: Path | None, out: Path
) -> TuneResult:
    """Per-cohort assist thresholds from an exploration log (training.policy.tune), written
    as a policy overlay to `out` after checking that policy.yaml can include it."""
    from core.policy_config import PolicyConfig
    from training.policy.tune import check_overlay, overlay, overlay_yaml, tune, write_overlay

    cfg = load_config(BanditConfig, layout=layout)
    policy = load_config(PolicyConfig, layout=layout)
    log, source = read_bandit_log(layout, log_path, events_path, cfg)
    model = fit_reward_model(log, cfg.reward.trigger_cost, seed=cfg.ope.bootstrap_seed)
    choices = tune(
        log,
        model,
        policy,
        cfg,
        cfg.tune.thresholds,
        cfg.tune.max_trigger_ratio,
        cfg.tune.min_decisions,
    )
    start, end = log.window
    provenance = {
        "written by": "intent policy tune (doubly robust OPE, 95 % user-bootstrap intervals)",
        "log": source,
        "data window": f"{start} .. {end}",
        "trigger budget": f"<= {cfg.tune.max_trigger_ratio:g} x the current policy's rate",
        "approximation": "below the old assist threshold the moment's default content is shown",
    }
    found = overlay(choices, provenance)
    check_overlay(policy, found)
    path = write_overlay(overlay_yaml(found), out)
    return TuneResult(choices, path, source)
