"""The policies of an evaluation, built from the server's own parts.

`none` is the simulator's `NoTriggers`; `rules` and `model` are the serving
`DecisionEngine` (`serving.assemble.build_engine`) behind `EnginePolicy`, so a simulated
decision runs the exact code of `POST /score`. Parts are swapped only where the semantics
are identical and the server's would only be slower: in-memory caps (`MemoryCapStore`, the
same `judge` as SQLite and Redis), an in-memory decision log (or the SQLite log with
fsync off when the log is kept), in-memory session store, and `SimulatedStore` as the
online store. Decision ids count up per run, so a seed replays byte for byte.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from core.bundle import Bundle
from core.layout import Layout
from core.policy_config import CapsConfig, PolicyConfig, read_overlay, with_overlay
from features.simulator.hook import NoTriggers, Policy
from loop.config import PolicyKind, PolicySpec
from loop.engine_policy import EnginePolicy
from loop.gating import StepGatedPolicy, gated_steps
from loop.simstore import HistoryConfig, SimulatedStore, StoreFedPolicy, Value
from serving.assemble import Configs, build_engine
from serving.caps import MemoryCapStore
from serving.decision import DecisionRequest
from serving.decision_log import DecisionLog, memory_log, sqlite_log
from serving.engine import DecisionEngine, Runtime
from serving.feature_read import BudgetedReader
from serving.sessions import MemorySessionStore

# "No caps" is the same cap code with limits nobody reaches in a simulated month.
_UNREACHABLE = 1_000_000_000


def lifted(caps: CapsConfig) -> CapsConfig:
    """The cap config with every limit out of reach (the over-triggering comparison)."""
    return caps.model_copy(
        update={"max_per_day": _UNREACHABLE, "max_per_episode": _UNREACHABLE, "cooldown_s": 0.0}
    )


def counting_ids(prefix: str):
    """Decision ids `<prefix>-000001`, ... in decision order (deterministic for a seed)."""
    counter = itertools.count(1)

    def make(_: DecisionRequest) -> str:
        return f"{prefix}-{next(counter):07d}"

    return make


def open_run_log(keep: Path | None, batch_max: int) -> DecisionLog:
    """In memory, or the server's SQLite log at `keep` (fsync off: a simulation has no
    power cut to survive, and nothing else differs)."""
    if keep is None:
        return memory_log()
    keep.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_log(keep, synchronous="off", batch_max=batch_max)


@dataclass
class BuiltPolicy:
    """A policy for `simulate(policy=...)`, with its engine and store when it has them."""

    policy: Policy
    engine: DecisionEngine | None = None
    store: SimulatedStore | None = None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def run_selector(spec: PolicySpec, configs: Configs, layout: Layout):
    """bandit.yaml with the run's exploration / learned-policy switches applied."""
    from serving.bandit import build_selector

    if configs.bandit is None:
        return None
    cfg = configs.bandit
    if spec.explore is not None:
        cfg = cfg.model_copy(
            update={"exploration": cfg.exploration.model_copy(update={"epsilon": spec.explore})}
        )
    if spec.learned:
        cfg = cfg.model_copy(update={"learned": cfg.learned.model_copy(update={"enabled": True})})
    return build_selector(cfg, layout.models)


def overlaid(policy: PolicyConfig, layout: Layout, rel: str) -> PolicyConfig:
    """policy.yaml with the cohorts of the overlay `rel` (relative to policy.yaml) applied."""
    return with_overlay(policy, read_overlay(layout.config_file("policy.yaml"), rel))


def build_policy(
    spec: PolicySpec,
    layout: Layout,
    configs: Configs,
    *,
    id_prefix: str,
    bundle: Bundle | None,
    steps: Mapping[str, Mapping[str, Value]],
    history: HistoryConfig,
    read_budget_ms: float,
    keep_log: Path | None,
    dropoff: Mapping[str, float] | None = None,
) -> BuiltPolicy:
    """The policy `spec` describes; kind model needs `bundle`, a step-gated one `dropoff`
    (each step's training-window drop-off, loop.gating)."""
    if spec.kind == PolicyKind.NONE:
        return BuiltPolicy(NoTriggers())
    caps_cfg = configs.policy.caps if spec.caps else lifted(configs.policy.caps)
    store: SimulatedStore | None = None
    if spec.kind == PolicyKind.RULES:
        runtime = Runtime(None, None, "rules", "policy evaluation: rules only")
    else:
        if bundle is None:
            raise ValueError(f"policy {spec.name}: kind model needs a model bundle")
        store = SimulatedStore(steps, history)
        reader = BudgetedReader(store, read_budget_ms, threads=1)
        runtime = Runtime(
            bundle,
            reader,
            "bundle",
            f"policy evaluation: v{bundle.version}",
            "simulated online store",
        )
    if spec.overlay is not None:  # the tuned-threshold policy
        configs = replace(configs, policy=overlaid(configs.policy, layout, spec.overlay))
    if spec.cold_start is not None:  # a what-if on the engine's cold-start rule
        features = configs.serving.features.model_copy(update={"cold_start": spec.cold_start})
        serving = configs.serving.model_copy(update={"features": features})
        configs = replace(configs, serving=serving)
    engine = build_engine(
        layout,  # every part it would open from the layout is given
        configs,
        runtime=runtime,
        caps=MemoryCapStore(caps_cfg),
        decision_log=open_run_log(keep_log, configs.serving.backends.log_batch_max),
        sessions=MemorySessionStore(configs.signals, configs.events.session_gap_minutes * 60),
        id_factory=counting_ids(id_prefix),
        selector=run_selector(spec, configs, layout),
    )
    policy = StoreFedPolicy(engine, store) if store is not None else EnginePolicy(engine)
    if spec.min_step_dropoff is not None:
        if not dropoff:
            engine.close()
            raise ValueError(f"policy {spec.name}: step gating needs the steps' drop-off rates")
        policy = StepGatedPolicy(policy, gated_steps(dropoff, spec.min_step_dropoff))
    return BuiltPolicy(policy, engine, store)
