"""The serving DecisionEngine as a simulator policy (offline use only)."""

from __future__ import annotations

import math

from core.vocabulary import Outcome
from features.signals import SNAPSHOT_COUNTERS, assistive_reason, derive, snapshot
from features.simulator.hook import Intervention, MomentContext
from serving.decision import DecisionRequest
from serving.engine import DecisionEngine


class EnginePolicy:
    """The simulator's `Policy` protocol (features.simulator.hook) over a DecisionEngine.

    The live session state of the context becomes the request's signals (counters plus the
    request-time signals of `derive`), the moment's episode id is passed through, and the
    engine's injected reader (if any) supplies the stored features - so policy evaluation
    runs exactly the server's decision code.
    """

    def __init__(self, engine: DecisionEngine) -> None:
        self.engine = engine

    def decide(self, ctx: MomentContext) -> Intervention:
        snap = snapshot(ctx.state)
        signals: dict[str, float] = {k: snap[k] for k in SNAPSHOT_COUNTERS}
        signals.update(derive(snap, ctx.now, self.engine.signals_cfg))
        # a dispatcher sends what it observed; an unobserved (NaN) signal, e.g. pause_rel_step
        # without the step's statistics, must not mask the stored value of the same name
        signals = {k: v for k, v in signals.items() if not math.isnan(v)}
        req = DecisionRequest(
            user_id=ctx.user_id,
            session_id=ctx.session_id,
            step=ctx.moment.step or ctx.state.step or "",
            now=ctx.now,
            moment=ctx.moment.type,
            signals=signals,
            episode=ctx.moment.episode,
            tz=ctx.tz,
            device=ctx.device,
            channel=ctx.channel,
            # the flag or the session's own evidence (one definition, as the server's guard)
            assistive=assistive_reason(ctx.state, self.engine.signals_cfg) is not None,
        )
        decision = self.engine.decide(req)
        return Intervention(decision.action, decision.decision_id, decision.arm)

    def observe(self, decision_id: str, outcome: Outcome, now: float) -> None:
        self.engine.record_outcome(decision_id, outcome, now)
