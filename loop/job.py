"""`intent evaluate-policy` as a job function: plan, simulate, summarize, write, log.

Callable from Python (a notebook, a scheduled job) without Typer; the CLI only prints what
`evaluate_policies` returns. Progress and notices go through callbacks so the caller picks
the display.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.layout import Layout


@dataclass(frozen=True)
class EvaluationRequest:
    """What to evaluate; empty or None fields take configs/loop.yaml's values."""

    policies: Sequence[str] = ()
    seeds: Sequence[int] = ()
    users: int | None = None
    workers: int | None = None
    mlflow: bool = True


@dataclass
class EvaluationResult:
    """Everything the evaluation produced; files are in `folder`."""

    baseline: str
    headline: str
    case: list[Any]
    rows: list[list[str]]
    notes: list[str]
    headline_sentence: str
    edge: Any
    folder: Path
    kept: list[Path] = field(default_factory=list)
    run_id: str | None = None


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _ignore(*_args: Any, **_kwargs: Any) -> None:
    return None


def evaluate_policies(
    layout: Layout,
    request: EvaluationRequest,
    *,
    on_event: Callable[..., None] = _ignore,
    announce: Callable[[str], None] = _ignore,
) -> EvaluationResult:
    """Replay simulated users with each policy; raises EvaluationError on a user mistake.

    `on_event("plan", total=n)`, then `on_event("run")` per finished run, then phase names
    ("summarizing", "logging to MLflow").
    """
    from core.settings import load_config
    from loop.config import LoopConfig
    from loop.evaluate import EvaluationError, plan_jobs, prepare, run_jobs
    from loop.outputs import (
        comparison_rows,
        dropoff_rows,
        estimates_json,
        funnel_png,
        headline_sentence,
        runs_frame,
        summary_markdown,
        write_files,
    )
    from loop.summary import case_study, evaluation_notes, summarize

    cfg = load_config(LoopConfig, layout=layout).evaluation
    changes: dict[str, object] = {}
    if request.seeds:
        changes["seeds"] = list(dict.fromkeys(request.seeds))
    if request.users is not None:
        changes["users"] = request.users
    if request.workers is not None:
        changes["workers"] = request.workers
    cfg = cfg.model_copy(update=changes)
    names = [p.name for p in cfg.policies]
    wanted = list(dict.fromkeys([cfg.baseline, *(request.policies or names)]))
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise EvaluationError(f"unknown policy {unknown[0]!r}; configured: {', '.join(names)}")
    specs = [cfg.policy(n) for n in names if n in wanted]
    specs = without_missing_learned(specs, layout, announce)
    specs = without_missing_overlays(specs, layout, announce)
    headline = cfg.headline if cfg.headline in wanted else specs[-1].name
    setup, model = prepare(layout, cfg, specs)
    folder = layout.reports / "evaluate-policy" / _stamp()
    jobs = plan_jobs(specs, cfg.seeds, cfg.keep_logs, folder / "logs")
    announce(
        f"{len(specs)} policies x {len(cfg.seeds)} seeds x {cfg.users:,} users, "
        f"{cfg.days} days from {cfg.start_date}; model: {model or 'not needed'}"
    )
    on_event("plan", total=len(jobs))
    results = run_jobs(setup, jobs, cfg.workers, lambda _r: on_event("run"))
    on_event("summarizing")
    summaries = summarize(results, [s.name for s in specs], cfg.baseline, cfg.confidence)
    case = case_study(summaries, cfg.baseline, headline, cfg.focus_step)
    comparison = comparison_rows(summaries, cfg.baseline, cfg.focus_step)
    context = [
        f"{cfg.users:,} simulated users per run, {cfg.days} days from {cfg.start_date}, "
        f"held-out seeds {', '.join(map(str, cfg.seeds))}",
        f"model: {model or 'none'}",
        f"intervals: {cfg.confidence:.0%} Student t over seeds",
    ]
    edge = headline_edge(results, specs, headline, cfg.confidence)
    notes = evaluation_notes(
        summaries, specs, setup.configs.policy, setup.configs.signals
    ) + versus_rules(results, specs, cfg.confidence)
    if edge is not None:
        notes.append(edge.sentence())
    markdown = summary_markdown(
        "Policy evaluation in simulation",
        context,
        case,
        cfg.baseline,
        headline,
        comparison,
        dropoff_rows(summaries, setup.configs.funnel.steps),
        notes,
    )
    png = funnel_png(summaries, setup.configs.funnel.steps, "policy evaluation")
    files = write_files(folder, markdown, runs_frame(results), estimates_json(summaries), png)
    run_id = None
    if request.mlflow:
        on_event("logging to MLflow")
        run_id = _log_evaluation(layout, setup, cfg, specs, model, results, summaries, files, edge)
    return EvaluationResult(
        baseline=cfg.baseline,
        headline=headline,
        case=case,
        rows=comparison_rows(summaries, cfg.baseline, cfg.focus_step, intervals=False),
        notes=notes,
        headline_sentence=headline_sentence(summaries, cfg.baseline, headline),
        edge=edge,
        folder=folder,
        kept=[r.kept for r in results if r.kept is not None],
        run_id=run_id,
    )


def without_missing_learned(specs, layout: Layout, announce: Callable[[str], None]):
    """Learned-policy rows only when `intent policy learn` has written an artefact."""
    from core.bandit import BanditConfig
    from core.settings import load_config
    from serving.bandit import artefact_problem

    if not any(s.learned for s in specs):
        return specs
    problem = artefact_problem(load_config(BanditConfig, layout=layout), layout.models)
    if problem is None:
        return specs
    announce(f"skipping the learned policy: {problem}")
    return [s for s in specs if not s.learned]


def without_missing_overlays(specs, layout: Layout, announce: Callable[[str], None]):
    """Tuned-threshold rows only when their overlay (`intent policy tune --out`) exists."""
    policy_dir = layout.config_file("policy.yaml").parent
    missing = [s for s in specs if s.overlay and not (policy_dir / s.overlay).is_file()]
    for spec in missing:
        announce(
            f"skipping {spec.name}: no overlay {policy_dir / spec.overlay} "
            f"(write it with `intent policy tune --out {policy_dir / spec.overlay}`)"
        )
    return [s for s in specs if s not in missing]


def versus_rules(results, specs, confidence: float) -> list[str]:
    """Each model policy against the rules on the same seeds: the issue's yardstick."""
    from loop.config import PolicyKind
    from loop.metrics import COMPLETION, TRIGGERS_PER_USER_DAY
    from loop.summary import paired, signed_num, signed_pp

    rules = next((s.name for s in specs if s.kind == PolicyKind.RULES), None)
    if rules is None:
        return []
    out = []
    for spec in specs:
        if spec.kind != PolicyKind.MODEL:
            continue
        completion = paired(results, spec.name, rules, COMPLETION, confidence)
        triggers = paired(results, spec.name, rules, TRIGGERS_PER_USER_DAY, confidence)
        out.append(
            f"{spec.name} vs {rules} (paired by seed): completion {signed_pp(completion)}, "
            f"triggers per user-day {signed_num(triggers)}"
        )
    return out


def headline_edge(results, specs, headline: str, confidence: float):
    """The headline model policy's completion edge over the best simple policy."""
    from loop.config import PolicyKind
    from loop.edge import model_edge
    from loop.metrics import COMPLETION

    kinds = {s.name: s.kind for s in specs}
    if kinds.get(headline) != PolicyKind.MODEL:
        return None
    return model_edge(results, specs, headline, COMPLETION, confidence)


def _log_evaluation(layout, setup, cfg, specs, model, results, summaries, files, edge) -> str:
    from loop.outputs import metric_series, per_seed_series
    from loop.tracking import log_run

    params = {
        "users": cfg.users,
        "days": cfg.days,
        "start_date": cfg.start_date.isoformat(),
        "seeds": ",".join(map(str, cfg.seeds)),
        "policies": ",".join(s.name for s in specs),
        "baseline": cfg.baseline,
        "headline": cfg.headline,
        "model": model or "none",
        "confidence": cfg.confidence,
    }
    for spec in specs:
        params[f"policy.{spec.name}"] = spec.model_dump_json(exclude={"name"})
    return log_run(
        layout,
        setup.configs.serving.model,
        cfg.mlflow_experiment,
        run_name=f"evaluate-policy-{_stamp()}",
        kind="evaluate-policy",
        params=params,
        metrics=[
            *metric_series(summaries),
            *per_seed_series(results, cfg.seeds),
            *((k, v, 0) for k, v in (edge.metrics() if edge else {}).items()),
        ],
        artifacts=files,
    )
