"""`intent evaluate-policy`: simulated users replayed with each policy in the loop.

Every policy runs on every held-out seed: one seed is one population with its own latent
traits and random draws, and the simulator keeps its draws paired across policies (common
random numbers), so the difference between two policies on a seed is mostly the policies'
doing. Runs are independent and go to worker processes; each returns only its metrics
(and, when asked, keeps its decision log and events on disk for `intent report`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.bundle import Bundle, load_bundle
from core.layout import Layout
from features.simulator.config import SimulatorConfig
from features.simulator.engine import simulate
from loop.config import EvaluationConfig, PolicyKind, PolicySpec
from loop.gating import step_dropoff
from loop.metrics import run_metrics
from loop.policies import build_policy
from loop.simstore import HistoryConfig, Value
from serving.assemble import Configs

DECISION_LOG_FILE = "decisions.db"
EVENTS_FILE = "events.parquet"


class EvaluationError(ValueError):
    """The evaluation cannot run as asked (no model, no step statistics, seed not held out)."""


@dataclass(frozen=True)
class Setup:
    """What every run needs; plain data, so it pickles into worker processes."""

    layout: Layout
    configs: Configs
    simulator: SimulatorConfig
    history: HistoryConfig
    evaluation: EvaluationConfig
    steps: dict[str, dict[str, Value]]
    bundle_dir: Path | None  # the champion's bundle (kind model)
    dropoff: dict[str, float] = field(default_factory=dict)  # step-gated policies


@dataclass(frozen=True)
class RunResult:
    """One policy on one seed."""

    policy: str
    seed: int
    metrics: dict[str, float]
    seconds: float
    history_builds: int  # returning users' histories folded by the simulated store
    kept: Path | None  # folder with the run's decision log and events, when kept


@lru_cache(maxsize=4)
def _bundle(path: Path) -> Bundle:
    """One loaded bundle per process (an ONNX session is worth reusing across runs)."""
    return load_bundle(path)


def run_one(setup: Setup, spec: PolicySpec, seed: int, keep: Path | None = None) -> RunResult:
    """Simulate `setup.evaluation.users` users on `seed` with `spec` deciding; measure."""
    began = time.perf_counter()
    cfg, configs = setup.evaluation, setup.configs
    bundle = None
    if spec.kind == PolicyKind.MODEL:
        if setup.bundle_dir is None:
            raise EvaluationError(f"policy {spec.name} needs a model bundle")
        bundle = _bundle(setup.bundle_dir)
    built = build_policy(
        spec,
        setup.layout,
        configs,
        id_prefix=f"{spec.name}-s{seed}",
        bundle=bundle,
        steps=setup.steps,
        history=setup.history,
        read_budget_ms=cfg.read_budget_ms,
        keep_log=keep / DECISION_LOG_FILE if keep is not None else None,
        dropoff=setup.dropoff,
    )
    try:
        result = simulate(
            setup.simulator,
            configs.signals,
            configs.funnel,
            cfg.users,
            cfg.days,
            seed,
            start=cfg.start_date,
            policy=built.policy,
        )
        decisions = built.engine.log.decisions() if built.engine is not None else None
    finally:
        built.close()
    metrics = run_metrics(
        result.events,
        result.users,
        result.oracle,
        configs.funnel,
        configs.policy.caps.max_per_day,
        decisions,
    )
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        pq.write_table(result.events, keep / EVENTS_FILE)
    builds = built.store.history_builds if built.store is not None else 0
    return RunResult(spec.name, seed, metrics, time.perf_counter() - began, builds, keep)


@dataclass(frozen=True)
class Job:
    spec: PolicySpec
    seed: int
    keep: Path | None


def plan_jobs(
    specs: Sequence[PolicySpec], seeds: Sequence[int], keep_logs: Sequence[str], keep_dir: Path
) -> list[Job]:
    """Every (policy, seed); model runs first (the longest), so workers finish together.
    The first seed of each policy in `keep_logs` keeps its log under `keep_dir/<policy>`."""
    cost = {PolicyKind.MODEL: 0, PolicyKind.RULES: 1, PolicyKind.NONE: 2}
    jobs = [
        Job(spec, seed, keep_dir / spec.name if spec.name in keep_logs and i == 0 else None)
        for spec in specs
        for i, seed in enumerate(seeds)
    ]
    return sorted(jobs, key=lambda j: cost[j.spec.kind])


def run_jobs(
    setup: Setup,
    jobs: Sequence[Job],
    workers: int,
    on_done: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run the jobs (in `workers` spawned processes when > 1); results in job order."""
    done = on_done or (lambda _r: None)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(run_one(setup, job.spec, job.seed, job.keep))
            done(results[-1])
        return results
    found: dict[int, RunResult] = {}
    # spawn, not fork: the parent may hold ONNX Runtime / DuckDB threads a fork would copy
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(run_one, setup, job.spec, job.seed, job.keep): i
            for i, job in enumerate(jobs)
        }
        for future in as_completed(futures):
            result = future.result()
            found[futures[future]] = result
            done(result)
    return [found[i] for i in range(len(jobs))]


def held_out_check(raw_events: Path, seeds: Sequence[int]) -> int | None:
    """The seed of the simulated training data (from its event ids `s<seed>-...`); raises
    EvaluationError when an evaluation seed equals it. None when there is no such file."""
    if not raw_events.exists():
        return None
    first = pq.ParquetFile(raw_events)
    if first.metadata.num_rows == 0:
        return None
    ids = first.read_row_group(0, columns=["event_id"]).column("event_id")
    head = ids[0].as_py() or ""
    if not head.startswith("s") or "-" not in head:
        return None
    try:
        trained = int(head[1 : head.index("-")])
    except ValueError:
        return None
    if trained in seeds:
        raise EvaluationError(
            f"seed {trained} generated the training data ({raw_events}); evaluation seeds "
            "must be held out - pick others in configs/loop.yaml or with --seed"
        )
    return trained


def read_step_stats(path: Path) -> pa.Table:
    """The offline step statistics (what the online store serves), or a clear error."""
    if not path.exists():
        raise EvaluationError(
            f"no step statistics at {path}: build the champion's features first "
            "(`intent features build`)"
        )
    return pq.read_table(path)


def prepare(
    layout: Layout, evaluation: EvaluationConfig, specs: Sequence[PolicySpec]
) -> tuple[Setup, str | None]:
    """Read every config and, when a model policy is asked for, the champion and the step
    statistics; returns the setup and the model's description (None without one).

    Raises EvaluationError naming what is missing and how to get it.
    """
    from core.registry import choose_model
    from core.settings import load_config
    from features.pipeline.config import AggregatesConfig
    from features.store.config import FeatureStoreConfig
    from loop.simstore import step_snapshot

    configs = Configs.load(layout)
    if evaluation.focus_step not in configs.funnel.steps:
        raise EvaluationError(
            f"focus_step {evaluation.focus_step!r} is not a step of the funnel "
            f"({', '.join(configs.funnel.steps)})"
        )
    held_out_check(layout.raw / "sim" / "events.parquet", evaluation.seeds)
    store_cfg = load_config(FeatureStoreConfig, layout=layout)
    history = HistoryConfig(
        signals=configs.signals,
        funnel=configs.funnel,
        aggregates=load_config(AggregatesConfig, layout=layout),
        session_gap_s=configs.events.session_gap_minutes * 60.0,
        user_ttl_s=store_cfg.ttl.user_stats.total_seconds(),
    )
    bundle_dir, described, steps, trained_until = None, None, {}, None
    if any(s.kind == PolicyKind.MODEL for s in specs):
        choice = choose_model(configs.serving.model, layout)
        if choice.bundle is None or choice.bundle.path is None:
            raise EvaluationError(
                f"the model policies need a champion ({choice.detail}): run `intent train "
                "--promote` (or `intent quickstart`), or leave them out with --policy"
            )
        bundle_dir = choice.bundle.path
        trained_until = choice.bundle.manifest.training_window.end
        described = f"v{choice.bundle.version} ({choice.source}: {choice.detail})"
        steps = step_snapshot(read_step_stats(layout.features / "step_stats.parquet"))
    dropoff = {}
    if any(s.min_step_dropoff is not None for s in specs):
        dropoff = step_dropoff(
            read_step_stats(layout.features / "step_stats.parquet"), trained_until
        )
    setup = Setup(
        layout=layout,
        configs=configs,
        simulator=load_config(SimulatorConfig, layout=layout),
        history=history,
        evaluation=evaluation,
        steps=steps,
        bundle_dir=bundle_dir,
        dropoff=dropoff,
    )
    return setup, described
