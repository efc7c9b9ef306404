"""`intent assistive-report`: the assistive cohort under the served rules policy, in simulation.

Runs the simulator with the real decision engine (rules, no model: the cold-start path every
deployment has) and reports, per cohort (assistive users whose events carry the flag,
assistive users known only from their behaviour, other humans), bot false-positive rate,
completion, the share of decisions the engine read as assistive (for `other`: the inference's
false positives) and the interventions shown at hesitation moments and of excluded kinds
(both must be 0 for the assistive cohorts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import pandas as pd
import typer

from core import cli_kit as kit
from core.policy_config import PolicyConfig
from core.vocabulary import ActionType
from features.config import EventsConfig, FunnelConfig, SignalsConfig
from features.simulator.config import SimulatorConfig
from features.simulator.hook import Intervention, MomentContext


@dataclass
class _Recording:
    """Wraps the engine policy and remembers (user, moment, read as assistive, action) per
    decision."""

    inner: object
    signals: SignalsConfig
    rows: list[tuple[str, str, bool, str]]

    def decide(self, ctx: MomentContext) -> Intervention:
        from features.signals import assistive_reason

        answer = self.inner.decide(ctx)
        seen = assistive_reason(ctx.state, self.signals) is not None
        self.rows.append((ctx.user_id, ctx.moment.type.value, seen, answer.action.value))
        return answer

    def observe(self, decision_id, outcome, now) -> None:
        self.inner.observe(decision_id, outcome, now)


def assistive_report(
    sim: SimulatorConfig,
    signals: SignalsConfig,
    funnel: FunnelConfig,
    policy: PolicyConfig,
    events: EventsConfig,
    *,
    users: int,
    days: int,
    seed: int,
    start: datetime | None = None,
    share: float | None = None,
) -> pd.DataFrame:
    """Per cohort (flagged / inferred assistive, other humans): users, completion, sessions,
    bot false-positive rate, decisions, the share read as assistive, hesitation-moment actions
    and excluded actions shown (before caps)."""
    from features.simulator import simulate
    from features.simulator.assistive import cohort_report, user_cohorts
    from loop.engine_policy import EnginePolicy
    from serving.caps import MemoryCapStore
    from serving.config import ColdStart, ExplainConfig
    from serving.decision_log import memory_log
    from serving.engine import DecisionEngine, Runtime

    if share is not None:
        sim = sim.model_copy(
            update={"assistive": sim.assistive.model_copy(update={"share": share})}
        )
    engine = DecisionEngine(
        policy,
        signals,
        runtime=Runtime(None, None, "rules", "assistive-report", ""),
        caps=MemoryCapStore(policy.caps),
        log=memory_log(),
        explain=ExplainConfig(top_k=0, candidates=0),
        cold_start=ColdStart.UNKNOWN_USER_AND_SESSION,
    )
    rec = _Recording(EnginePolicy(engine), signals, [])
    result = simulate(sim, signals, funnel, users, days, seed, start=start, policy=rec)
    report = cohort_report(result.events, result.users, events.bots, signals)
    calls = pd.DataFrame(rec.rows, columns=["user_id", "moment", "read_as_assistive", "action"])
    calls["cohort"] = calls["user_id"].map(user_cohorts(result.users))
    calls = calls.dropna(subset=["cohort"])  # bots
    hesitation = {m.value for m in policy.assistive.hesitation_moments}
    excluded = {a.value for a in policy.assistive.excluded_actions}
    shown = calls["action"] != ActionType.NONE.value
    calls["hesitation_actions"] = shown & calls["moment"].isin(hesitation)
    calls["excluded_actions"] = calls["action"].isin(excluded)
    per = calls.groupby("cohort").agg(
        decisions=("action", "size"),
        read_as_assistive=("read_as_assistive", "mean"),
        hesitation_actions=("hesitation_actions", "sum"),
        excluded_actions=("excluded_actions", "sum"),
    )
    return report.join(per, how="left").fillna(0)


def report_command(
    users: Annotated[int, typer.Option("--users", min=1)] = 2_000,
    days: Annotated[int, typer.Option("--days", min=1)] = 14,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 7,
    share: Annotated[
        float | None,
        typer.Option("--share", min=0.0, max=0.99, help="Override simulator.yaml assistive.share."),
    ] = None,
) -> None:
    """Assistive cohort in simulation: bot false positives, completion, suppressed help."""
    from core.layout import Layout
    from core.settings import load_config

    layout = Layout.from_env()
    cfgs = [
        load_config(c, layout=layout)
        for c in (SimulatorConfig, SignalsConfig, FunnelConfig, PolicyConfig, EventsConfig)
    ]
    frame = assistive_report(*cfgs, users=users, days=days, seed=seed, share=share)
    kit.console().print(frame.round(4).to_string())


def register(app: typer.Typer) -> None:
    """Add `assistive-report`."""
    kit.command(app, "assistive-report", report_command)
