"""The decision engine: request -> features -> model or rules -> policy -> holdout -> caps -> log.

In process, no HTTP: the BentoML service, the benchmarks and the simulator (through
`EnginePolicy`, the `features.simulator.hook.Policy` protocol) all run this code.

- Signals: the live session state (when no online store holds it), then the online features,
  then the request's own signals - each overriding the one before for the same name.
- Model or rules: the model scores when there is one, the online read worked within its
  budget and the store knows enough (`serving.yaml features.cold_start`: by default the user's
  history or the session's live state); otherwise the rules answer and `fallback_reason`
  says why.
- Holdout users get no trigger (logged with `would_action`); caps are consulted only for a
  trigger that would be shown, so held-out and no-action decisions never use up a slot.
- The decision is logged durably before it is returned ("write before you answer").

The model and its reader form a `Runtime` swapped atomically (`swap`): a request reads the
reference once, so a hot swap never mixes two models in one decision or drops a request.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from core.bundle import Bundle
from core.policy_config import PolicyConfig
from core.registry import ModelSource
from core.vocabulary import ActionType, Outcome, Source
from features.config import SignalsConfig
from features.signals import SNAPSHOT_COUNTERS, SessionState, derive, snapshot
from serving.assistive import guard as assistive_guard
from serving.assistive import session_assistive
from serving.bandit import ActionSelector, Choice, select_action
from serving.caps import CapRequest, CapStore, CapVerdict
from serving.config import BudgetsConfig, ColdStart, ExplainConfig
from serving.decision import Decision, DecisionRequest, FallbackReason, default_episode
from serving.decision_log import DecisionLog, DecisionLogError
from serving.experiments import Assigner, Assignment
from serving.feature_read import BudgetedReader, FeatureRead
from serving.health import HealthBoard
from serving.log_limit import LimitedLog
from serving.offloop import BudgetExceeded, OffLoop
from serving.policy import (
    Policy,
    PolicyOutcome,
    Reason,
    arm_cohort_overrides,
    matching_cohorts,
    model_policy,
    rules_policy,
)
from serving.rules import detect_moment, score_signals
from serving.sessions import MemorySessionStore, SessionStore

# cap_reason when the cap store cannot be asked (the trigger is suppressed: fail closed).
CAP_STORE_ERROR = "store_error"
# ... and the public detail (the internal one - exception, timeout - goes to the log)
CAP_STORE_DETAIL = "the cap store did not answer; the trigger is suppressed"

# Request context the model may use as (categorical) features, besides the signals.
CONTEXT_FEATURES = ("step", "device", "channel", "moment")

# What a decision's `reasons` say about a fallback: fixed text, never a path or an exception
# (decisions go back to the caller); the internal detail goes to the (rate-limited) log.
PUBLIC_FALLBACK_DETAIL: dict[FallbackReason, str] = {
    FallbackReason.FEATURE_STORE_ERROR: "the online feature store could not be read",
    FallbackReason.FEATURE_BUDGET_EXCEEDED: "the online feature read overran its time budget",
    FallbackReason.NO_MODEL: "no model is being served",
    FallbackReason.MODEL_ERROR: "the model could not score these features",
}

log = logging.getLogger(__name__)
_LIMITED = LimitedLog(log)


@dataclass(frozen=True)
class Runtime:
    """The model, the online reader that feeds it, and where the model came from."""

    bundle: Bundle | None
    reader: BudgetedReader | None
    source: ModelSource
    detail: str
    reader_detail: str = ""
    role: str = "champion"  # serving.rollout: "challenger" for the canary's runtime

    @property
    def model_version(self) -> str | None:
        return self.bundle.version if self.bundle is not None else None


def new_decision_id(_: DecisionRequest) -> str:
    """A UUIDv7 (RFC 9562: 48-bit Unix ms, then 74 random bits) as 32 hex digits.

    Unique and unguessable like a UUIDv4, but time-ordered: the decision log's primary-key
    index grows at its end instead of dirtying a random page per insert, so a group commit
    writes fewer pages (~40 % less writer CPU per single-row commit on SQLite).
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return uuid.UUID(int=value).hex


_READ_HERE = object()  # `uncapped(session=...)` not given: read the session store inline


class DecisionEngine:
    """Decides at micro-moments; thread-safe (state lives in the stores)."""

    def __init__(
        self,
        policy_cfg: PolicyConfig,
        signals_cfg: SignalsConfig,
        *,
        runtime: Runtime,
        caps: CapStore,
        log: DecisionLog,
        explain: ExplainConfig,
        cold_start: ColdStart,
        sessions: SessionStore | None = None,
        id_factory: Callable[[DecisionRequest], str] = new_decision_id,
        on_decision: Callable[[Decision], None] | None = None,
        budgets: BudgetsConfig | None = None,
        selector: ActionSelector | None = None,
    ) -> None:
        """`budgets`: the async paths run cap checks and lookups on thread pools, each awaited
        at most its budget (None: unbounded, as the in-process simulation wants)."""
        self.policy = Policy(policy_cfg)
        self.selector = selector  # exploration / learned policy (serving.bandit); None: table
        self.signals_cfg = signals_cfg
        self.assigner = Assigner(policy_cfg.experiments)
        self.caps = caps
        self.log = log
        self.explain = explain
        self.cold_start = cold_start
        self.sessions = sessions
        self.id_factory = id_factory
        self.on_decision = on_decision
        self._runtime = runtime
        self.rollout: Any = None  # serving.rollout.Rollout (shadow / canary), attached after
        self.budgets = budgets
        self.health = HealthBoard()
        threads = budgets.threads if budgets is not None else 2
        self._caps_pool = OffLoop(threads, "caps")
        self._lookup_pool = OffLoop(threads, "log-lookup")

    # --- the model runtime --------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def swap(self, runtime: Runtime) -> Runtime:
        """Serve `runtime` from the next request on; returns the previous one."""
        old, self._runtime = self._runtime, runtime
        return old

    # --- deciding -----------------------------------------------------------------------
    def decide(self, req: DecisionRequest) -> Decision:
        """Decide, log durably, return (blocks on the online read and the log commit)."""
        started = time.perf_counter()
        rt = self._serving(req)
        read = rt.reader.read(req.user_id, req.session_id, req.step, req.now) if rt.reader else None
        uncapped = self.uncapped(req, rt, read, started)
        decision, cap_req, verdict = self._capped_sync(uncapped, started)
        try:
            self.log.append_decision(decision.log_row())
        except DecisionLogError:
            if cap_req is not None and verdict is not None:
                self.caps.release(cap_req, verdict)
            raise
        self._notify(decision)
        return decision

    async def decide_async(self, req: DecisionRequest) -> Decision:
        """`decide` for an event loop: the read and the log commit are awaited, not blocked on."""
        started = time.perf_counter()
        rt = self._serving(req)
        read = None
        if rt.reader is not None:
            read = await rt.reader.read_async(req.user_id, req.session_id, req.step, req.now)
        # the live state feeds the signals without an online store, and the assistive flag
        # when the request does not carry it; otherwise skip the store (hot path)
        needed = rt.reader is None or not req.assistive
        session = await self._session_async(req) if needed else None
        decision = self.uncapped(req, rt, read, started, session=session)
        cap_req = self._cap_request(decision)
        verdict, error = None, None
        if cap_req is not None:
            verdict, error = await self._acquire_async(cap_req)
        decision = self._capped(decision, verdict, error, started)
        budget = self.budgets.log_commit_ms / 1000.0 if self.budgets is not None else None
        try:
            await self.log.append_decision_async(decision.log_row(), budget_s=budget)
        except DecisionLogError:
            # not answered, not kept: the trigger will not be shown, so its slot goes back
            if cap_req is not None and verdict is not None and verdict.allowed:
                self._caps_pool.submit(self._release_quietly, cap_req, verdict)
            raise
        self._notify(decision)
        return decision

    async def _acquire_async(self, req: CapRequest) -> tuple[CapVerdict | None, str | None]:
        """The cap check off the event loop, within `budgets.caps_ms` (else fail closed)."""
        budget = self.budgets.caps_ms / 1000.0 if self.budgets is not None else 3600.0
        if not getattr(self.caps, "blocking", True):  # in memory: nothing can hang
            try:
                return self.caps.acquire(req), None
            except Exception as exc:
                _LIMITED.warning("caps-error", "cap store failed: %s", type(exc).__name__)
                return None, CAP_STORE_DETAIL
        try:
            verdict = await self._caps_pool.run(
                self.caps.acquire,
                req,
                budget_s=budget,
                what="the cap store",
                on_late=lambda v: self._release_quietly(req, v),
            )
        except BudgetExceeded as exc:
            _LIMITED.warning("caps-budget", "cap check suppressed a trigger: %s", exc)
            return None, CAP_STORE_DETAIL
        except Exception as exc:  # fail closed: an unchecked trigger may over-trigger
            _LIMITED.warning("caps-error", "cap store failed: %s", type(exc).__name__)
            return None, CAP_STORE_DETAIL
        return verdict, None

    def _release_quietly(self, req: CapRequest, verdict: CapVerdict) -> None:
        if not verdict.allowed:
            return
        try:
            self.caps.release(req, verdict)
        except Exception as exc:
            _LIMITED.warning("caps-release", "cap slot not released: %s", type(exc).__name__)

    def _notify(self, decision: Decision) -> None:
        if self.on_decision is not None:
            self.on_decision(decision)
        if self.rollout is not None:
            self.rollout.observe(decision)

    def _serving(self, req: DecisionRequest) -> Runtime:
        """The champion, or the challenger for a canary user (never a holdout user)."""
        if self.rollout is None:
            return self._runtime
        holdout = self.assigner(req.user_id).holdout
        return self.rollout.runtime_for(req.user_id, self._runtime, holdout)

    def compute(
        self, req: DecisionRequest, rt: Runtime, read: FeatureRead | None, started: float
    ) -> Decision:
        """Everything but the read and the log: pure apart from the cap store."""
        return self._capped_sync(self.uncapped(req, rt, read, started), started)[0]

    def _capped_sync(
        self, decision: Decision, started: float
    ) -> tuple[Decision, CapRequest | None, CapVerdict | None]:
        """The cap check inline (fail closed); the request and verdict let a caller that
        cannot log the decision give the slot back."""
        cap_req = self._cap_request(decision)
        verdict, error = None, None
        if cap_req is not None:
            try:
                verdict = self.caps.acquire(cap_req)
            except Exception as exc:  # fail closed: an unchecked trigger may over-trigger
                _LIMITED.warning("caps-error", "cap store failed: %s", type(exc).__name__)
                error = CAP_STORE_DETAIL
        return self._capped(decision, verdict, error, started), cap_req, verdict

    @staticmethod
    def _cap_request(d: Decision) -> CapRequest | None:
        """The cap check a decision needs: only a trigger that would be shown uses a slot."""
        if d.action == ActionType.NONE:
            return None
        r = d.request
        return CapRequest(r.user_id, r.session_id, d.episode, d.action, r.now, d.tz)

    @staticmethod
    def _capped(
        d: Decision, verdict: CapVerdict | None, error: str | None, started: float
    ) -> Decision:
        """The decision after its cap check (`error`: the store could not be asked)."""
        latency_ms = (time.perf_counter() - started) * 1000.0
        if (verdict is not None and verdict.allowed) or (verdict is None and error is None):
            return replace(d, latency_ms=latency_ms)
        cap, detail = (
            (str(verdict.reason), verdict.detail or "")
            if verdict is not None
            else (CAP_STORE_ERROR, error or "")
        )
        return replace(
            d,
            action=ActionType.NONE,
            content=None,
            capped=True,
            cap_reason=cap,
            reasons=(*d.reasons, Reason("cap", cap, None, detail)),
            latency_ms=latency_ms,
        )

    def uncapped(
        self,
        req: DecisionRequest,
        rt: Runtime,
        read: FeatureRead | None,
        started: float,
        *,
        session: SessionState | object | None = _READ_HERE,
    ) -> Decision:
        """The decision before the cap check (holdout applied). `session`: the live session
        state, already read (the async path reads it off the loop); by default read here."""
        if session is _READ_HERE:
            session = self.sessions.get(req.session_id) if self.sessions is not None else None
        cfg = self.policy.cfg
        signals = self._signals(req, rt, read, session)
        assignment = self.assigner(req.user_id)
        returning = req.returning
        if returning is None and read is not None and read.error is None:
            returning = read.user_known
        cohorts = matching_cohorts(cfg.cohorts, req.device, req.channel, returning)
        assistive_why = session_assistive(
            req.assistive, session if isinstance(session, SessionState) else None, self.signals_cfg
        )
        assistive = assistive_why is not None
        arm_overrides = [
            *assignment.overrides,
            *arm_cohort_overrides(assignment.cohorts, req.device, req.channel, returning),
        ]
        if assistive and not cfg.assistive.overrides.is_empty():
            arm_overrides = [*arm_overrides, ("assistive", cfg.assistive.overrides)]
        th = self.policy.thresholds(cohorts, arm_overrides)
        moment = req.moment or detect_moment([*th.escalation, *th.signal_table], signals)

        fallback, detail = self._fallback(rt, read, self.cold_start)
        outcome: PolicyOutcome | None = None
        feature_reasons: list[Reason] = []
        score = math.nan
        if fallback is None:
            try:
                score, outcome, feature_reasons = self._model(req, rt.bundle, signals, moment, th)
            except Exception as exc:  # a feature the graph cannot take; say so and use rules
                fallback, detail = FallbackReason.MODEL_ERROR, f"{type(exc).__name__}: {exc}"
        if outcome is None:
            score = score_signals(signals, cfg.heuristic)
            outcome = rules_policy(score, moment, req.step, signals, th, cfg)
        choice = None
        if self.selector is not None:
            outcome, choice = select_action(
                self.selector,
                cfg,
                step=req.step,
                device=req.device,
                channel=req.channel,
                moment=moment,
                signals=signals,
                score=score,
                outcome=outcome,
                holdout=assignment.holdout,
                model_scored=fallback is None,
                key=f"{req.user_id}|{req.session_id}|{req.step}|{moment}|{req.now:.6f}",
            )
        if assistive:
            outcome = assistive_guard(
                outcome, moment, req.step, cfg.assistive, cfg.content_key, assistive_why or ""
            )
        reasons = list(outcome.reasons) + feature_reasons
        if fallback is not None:
            public = PUBLIC_FALLBACK_DETAIL.get(fallback)
            if public is not None and detail and fallback != FallbackReason.NO_MODEL:
                _LIMITED.warning(f"fallback-{fallback.value}", "%s: %s", fallback.value, detail)
            reasons.insert(0, Reason("fallback", fallback.value, None, public or detail or ""))
        return self._finish(
            req, rt, started, signals, moment, assignment, score, outcome, reasons, fallback, choice
        )

    async def _session_async(self, req: DecisionRequest) -> SessionState | None:
        """The live session state off the event loop, within `budgets.lookup_ms`: a locked
        or hung session store costs the state (signals from the request and the online
        store, the request's own assistive flag), never the loop."""
        if self.sessions is None:
            return None
        if isinstance(self.sessions, MemorySessionStore):  # no I/O: no thread hop
            return self.sessions.get(req.session_id)
        budget = self.budgets.lookup_ms / 1000.0 if self.budgets is not None else 3600.0
        try:
            return await self._lookup_pool.run(
                self.sessions.get, req.session_id, budget_s=budget, what="the session store"
            )
        except Exception as exc:  # BudgetExceeded or a store error: decide without it
            _LIMITED.warning("sessions-read", "session state not read: %s", exc)
            return None

    def _signals(
        self,
        req: DecisionRequest,
        rt: Runtime,
        read: FeatureRead | None,
        state: SessionState | None,
    ) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        if rt.reader is None and state is not None:
            snap = snapshot(state)
            merged.update({k: snap[k] for k in SNAPSHOT_COUNTERS})
            merged.update(derive(snap, req.now, self.signals_cfg))
        if read is not None and read.error is None:
            merged.update({k: v for k, v in read.features.items() if v is not None})
        merged.update(req.signals)
        return merged

    @staticmethod
    def _fallback(
        rt: Runtime, read: FeatureRead | None, cold_start: ColdStart
    ) -> tuple[FallbackReason | None, str | None]:
        if rt.bundle is None:
            return FallbackReason.NO_MODEL, f"no model: {rt.detail}"
        if read is None:
            return FallbackReason.FEATURE_STORE_ERROR, rt.reader_detail or "no online store"
        if read.error is not None:
            return read.error, read.detail
        if not read.user_known:
            if cold_start == ColdStart.UNKNOWN_USER:
                return FallbackReason.COLD_START, "user unknown to the online store"
            if not read.session_known:
                return FallbackReason.COLD_START, "user and session unknown to the online store"
        return None, None

    def _model(self, req, bundle, signals, moment, th) -> tuple[float, PolicyOutcome, list[Reason]]:
        row = dict(signals)
        for name, value in zip(
            CONTEXT_FEATURES, (req.step, req.device, req.channel, moment), strict=True
        ):
            if name not in row and value is not None:
                row[name] = str(value)
        matrix = bundle.vectorize([row])
        score = float(bundle.predict(matrix)[0])
        outcome = model_policy(score, moment, req.step, signals, th, self.policy.cfg)
        reasons: list[Reason] = []
        if outcome.action != ActionType.NONE:
            for name, delta in bundle.explain(
                matrix[0], self.explain.top_k, self.explain.candidates
            ):
                sign = "raises" if delta > 0 else "lowers"
                detail = f"{name}={row.get(name)} {sign} the score by {abs(delta):.3f}"
                reasons.append(Reason("feature", name, delta, detail))
        return score, outcome, reasons

    def _finish(
        self,
        req: DecisionRequest,
        rt: Runtime,
        started: float,
        signals: Mapping[str, Any],
        moment,
        assignment: Assignment,
        score: float,
        outcome: PolicyOutcome,
        reasons: list[Reason],
        fallback: FallbackReason | None,
        choice: Choice | None = None,
    ) -> Decision:
        cfg = self.policy.cfg
        tz = req.tz or cfg.caps.default_tz
        episode = req.episode or default_episode(moment, req.step, req.now, signals)
        action = would = outcome.action
        if assignment.holdout and would != ActionType.NONE:
            action = ActionType.NONE
            reasons.append(
                Reason("holdout", "global_holdout", None, f"held out; would show {would}")
            )
        return Decision(
            decision_id=self.id_factory(req),
            request=req,
            score=score,
            band=outcome.band.name,
            moment=moment,
            episode=episode,
            action=action,
            content=outcome.content if action != ActionType.NONE else None,
            reasons=tuple(reasons),
            source=Source.RULES if fallback is not None else Source.MODEL,
            fallback_reason=fallback,
            model_version=rt.model_version if fallback is None else None,
            arm=assignment.label
            if self.rollout is None
            else self.rollout.arm_label(assignment.label, assignment.holdout, rt),
            holdout=assignment.holdout,
            would_action=would,
            capped=False,
            cap_reason=None,
            signals=signals,
            tz=tz,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            propensity=1.0 if choice is None or assignment.holdout else choice.propensity,
            eligible=choice.eligible if choice else tuple(dict.fromkeys(("none", would.value))),
            served_by=rt.role,
        )

    # --- outcomes -----------------------------------------------------------------------
    def record_outcome(self, decision_id: str, outcome: Outcome, now: float) -> bool:
        """Append an outcome; False when the decision id is unknown (nothing is written)."""
        if not self.log.has_decision(decision_id):
            return False
        self.log.append_outcome(decision_id, Outcome(outcome).value, now)
        return True

    async def record_outcome_async(self, decision_id: str, outcome: Outcome, now: float) -> bool:
        """`record_outcome` off the event loop: the lookup within `budgets.lookup_ms`, the
        write within `budgets.log_commit_ms`; over budget it raises DecisionLogError (503)."""
        lookup = self.budgets.lookup_ms / 1000.0 if self.budgets is not None else 3600.0
        commit = self.budgets.log_commit_ms / 1000.0 if self.budgets is not None else None
        try:
            known = await self._lookup_pool.run(
                self.log.has_decision, decision_id, budget_s=lookup, what="the decision log"
            )
        except BudgetExceeded as exc:
            raise DecisionLogError(f"{exc}; try again later") from None
        except Exception as exc:  # the backend is down: a 503, not a 500
            raise DecisionLogError(f"decision lookup failed: {type(exc).__name__}") from exc
        if not known:
            return False
        await self.log.append_outcome_async(
            decision_id, Outcome(outcome).value, now, budget_s=commit
        )
        return True

    def close(self) -> None:
        if self.rollout is not None:
            self.rollout.close()
        self._caps_pool.close()
        self._lookup_pool.close()
        rt = self._runtime
        if rt.reader is not None:
            rt.reader.close()
        self.caps.close()
        self.log.close()
        if self.sessions is not None:
            self.sessions.close()
        if self.selector is not None:
            self.selector.close()
