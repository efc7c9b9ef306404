"""Shadow and canary challengers (serving.rollout): two real bundles, real decision logs."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_serving_drift import training_matrix
from test_serving_engine import DictReader, make_engine, request, user

from bench.synthetic import make_bundle
from core.bundle import load_bundle
from core.vocabulary import Source
from serving.config import CanaryConfig, CanaryGuard, RolloutConfig, ShadowConfig
from serving.decision import FallbackReason
from serving.decision_log import DECISION_COLUMNS, postgres_log, sqlite_log
from serving.drift import served_row
from serving.engine import Runtime
from serving.experiments import bucket
from serving.rollout import CHALLENGER, Rollout, guard_verdict, rollout_metrics

USERS = 300
# How long a test waits for background shadows to finish (generous: the machine is shared).
DRAIN_S = 120.0


class FaultyBundle:
    """A real bundle whose predictions stall or fail: a broken challenger, injected."""

    def __init__(self, inner: Any, *, delay_s: float = 0.0, fail: bool = False) -> None:
        self.inner, self.delay_s, self.fail = inner, delay_s, fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict(self, matrix: Any) -> Any:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("injected challenger fault")
        return self.inner.predict(matrix)


@pytest.fixture(scope="module")
def challenger_bundle(tmp_path_factory: pytest.TempPathFactory):
    """Version 2: another small model on the same features (different trees and seed)."""
    directory = tmp_path_factory.mktemp("challenger") / "2"
    make_bundle(directory, version="2", n_trees=10, rows=1200, seed=7)
    return load_bundle(directory)


@pytest.fixture(scope="module")
def rows(bundle) -> dict[str, dict]:
    """Known users (online features) so the model, not the rules, scores their decisions."""
    return {f"u{i}": row for i, row in enumerate(training_matrix(bundle, USERS, seed=3))}


def rollout_cfg(**kw: Any) -> RolloutConfig:
    return RolloutConfig(
        shadow=kw.pop("shadow", ShadowConfig()), canary=kw.pop("canary", CanaryConfig()), **kw
    )


def with_rollout(engine, cfg: RolloutConfig, challenger) -> Rollout:
    rollout = Rollout(cfg, engine.log, lambda: engine.runtime)
    rollout.set_challenger(Runtime(challenger, engine.runtime.reader, "registry", "test"))
    engine.rollout = rollout
    return rollout


def counter(result: str) -> float:
    return rollout_metrics().shadow.labels(result)._value.get()


def test_shadow_logs_both_scores_and_never_changes_actions(
    policy_cfg, signals_cfg, bundle, challenger_bundle, rows, tmp_path: Path
) -> None:
    plain = make_engine(policy_cfg, signals_cfg, bundle=bundle, reader=DictReader(rows))
    log = sqlite_log(tmp_path / "d.db", synchronous="off", batch_max=64)
    shadowed = make_engine(policy_cfg, signals_cfg, bundle=bundle, reader=DictReader(rows), log=log)
    rollout = with_rollout(
        shadowed, rollout_cfg(shadow=ShadowConfig(enabled=True)), challenger_bundle
    )
    users = list(rows)[:120]
    try:
        before = [plain.decide(request(u, signals={})) for u in users]
        after = [shadowed.decide(request(u, signals={})) for u in users]
        assert rollout.drain(DRAIN_S)
        assert [(d.action, d.score, d.band, d.arm) for d in after] == [
            (d.action, d.score, d.band, d.arm) for d in before
        ]
        frame = log.decisions().set_index("decision_id")
    finally:
        plain.close()
        shadowed.close()
    model = [d for d in after if d.source == Source.MODEL]
    assert len(model) == len(users)  # known users: every decision scored by the model
    triggers = {d.action.value for d in model}
    assert len(triggers) > 1  # a mix of actions, so "unchanged" says something
    for d in model:
        row = frame.loc[d.decision_id]
        expected = challenger_bundle.predict(challenger_bundle.vectorize([served_row(d)]))[0]
        assert row["shadow_version"] == "2" and row["model_version"] == "1"
        assert row["shadow_score"] == pytest.approx(float(expected), abs=1e-9)
        assert row["score"] == pytest.approx(d.score)
    differ = sum(abs(frame.loc[d.decision_id, "shadow_score"] - d.score) > 1e-6 for d in model)
    assert differ > len(model) // 2  # two different models, both logged


def test_a_slow_or_failing_shadow_neither_delays_nor_fails_the_caller(
    policy_cfg, signals_cfg, bundle, challenger_bundle, rows
) -> None:
    delay_s = 6.0  # the margin below (delay_s / 2) absorbs a slow log commit on a busy machine
    cfg = rollout_cfg(shadow=ShadowConfig(enabled=True, budget_ms=100, threads=1))
    slow = make_engine(policy_cfg, signals_cfg, bundle=bundle, reader=DictReader(rows))
    rollout = with_rollout(slow, cfg, FaultyBundle(challenger_bundle, delay_s=delay_s))
    users = list(rows)[:3]
    timeouts, errors = counter("timeout"), counter("error")

    async def timed() -> list[float]:
        spent = []
        for u in users:
            started = time.perf_counter()
            d = await slow.decide_async(request(u, signals={}))
            spent.append(time.perf_counter() - started)
            assert d.source == Source.MODEL
        return spent

    try:
        spent = asyncio.run(timed())
        # the shadow sleeps delay_s per row; the caller never waits for it (generous margin)
        assert max(spent) < delay_s / 2, spent
        assert rollout.drain(DRAIN_S)
        logged = slow.log.decisions()
    finally:
        slow.close()
    assert counter("timeout") - timeouts == len(users)  # late: dropped, counted
    assert logged["shadow_score"].isna().all()

    failing = make_engine(policy_cfg, signals_cfg, bundle=bundle, reader=DictReader(rows))
    rollout = with_rollout(failing, cfg, FaultyBundle(challenger_bundle, fail=True))
    try:
        decided = [failing.decide(request(u, signals={})) for u in users]
        assert rollout.drain(DRAIN_S)
    finally:
        failing.close()
    assert all(d.source == Source.MODEL for d in decided)
    assert counter("error") - errors == len(users)


def test_canary_share_is_sticky_and_close_to_the_configured_share(
    policy_cfg, signals_cfg, bundle, challenger_bundle
) -> None:
    share, n = 0.1, 20_000
    cfg = rollout_cfg(canary=CanaryConfig(enabled=True, share=share, salt="canary-test"))
    engine = make_engine(policy_cfg, signals_cfg, bundle=bundle)
    rollout = with_rollout(engine, cfg, challenger_bundle)
    champion = engine.runtime
    try:
        ids = [f"user-{i}" for i in range(n)]
        first = [rollout.runtime_for(u, champion, False).role for u in ids]
        again = [rollout.runtime_for(u, champion, False).role for u in reversed(ids)][::-1]
    finally:
        engine.close()
    assert first == again  # sticky: the same user, the same model
    canary = first.count(CHALLENGER) / n
    assert abs(canary - share) < 4 * (share * (1 - share) / n) ** 0.5  # within 4 sigma
    # its own salt: independent of the holdout and experiment layers
    other = sum(bucket(policy_cfg.experiments.holdout.salt, u) < share for u in ids) / n
    overlap = sum(
        r == CHALLENGER and bucket(policy_cfg.experiments.holdout.salt, u) < share
        for u, r in zip(ids, first, strict=True)
    )
    assert overlap / n == pytest.approx(canary * other, abs=0.005)


def test_canary_users_are_served_by_the_challenger_and_holdout_users_never(
    policy_cfg, signals_cfg, bundle, challenger_bundle, rows
) -> None:
    cfg = rollout_cfg(canary=CanaryConfig(enabled=True, share=0.5, salt="canary-test"))
    engine = make_engine(policy_cfg, signals_cfg, bundle=bundle, reader=DictReader(rows))
    rollout = with_rollout(engine, cfg, challenger_bundle)
    held = [user(True, policy_cfg, start=i * 1000) for i in range(40)]
    held = [u for u in dict.fromkeys(held) if bucket("canary-test", u) < 0.5]
    assert held  # holdout users the canary's hash alone would have taken
    try:
        served = [engine.decide(request(u, signals={})) for u in list(rows)[:200]]
        holdout = [engine.decide(request(u, signals={})) for u in held]
    finally:
        engine.close()
    holdout += [d for d in served if d.holdout]
    served = [d for d in served if not d.holdout]
    for d in served:
        expected = "challenger" if bucket("canary-test", d.request.user_id) < 0.5 else "champion"
        assert d.served_by == expected
        assert d.arm is not None and d.arm.endswith(f"canary={expected}")
        assert d.model_version == ("2" if expected == "challenger" else "1")
    assert {d.served_by for d in served} == {"challenger", "champion"}
    for d in holdout:
        assert d.holdout and d.served_by == "champion" and d.arm == "holdout"
    assert rollout.share == 0.5


def test_the_guard_rolls_a_failing_canary_back(
    policy_cfg, signals_cfg, bundle, challenger_bundle, rows, caplog
) -> None:
    guard = CanaryGuard(min_decisions=20, max_fallback_rate=0.5, max_error_rate=0.05)
    cfg = rollout_cfg(canary=CanaryConfig(enabled=True, share=0.5, salt="canary-test", guard=guard))
    engine = make_engine(policy_cfg, signals_cfg, bundle=bundle, reader=DictReader(rows))
    rollout = with_rollout(engine, cfg, FaultyBundle(challenger_bundle, fail=True))
    metrics = rollout_metrics()
    before = metrics.rollbacks.labels("error_rate")._value.get()
    try:
        decided = [engine.decide(request(u, signals={})) for u in list(rows)[:200]]
    finally:
        engine.close()
    canary = [d for d in decided if d.served_by == CHALLENGER]
    assert len(canary) == guard.min_decisions  # rolled back at the first verdict
    assert all(d.fallback_reason == FallbackReason.MODEL_ERROR for d in canary)
    after = decided[decided.index(canary[-1]) + 1 :]
    assert after and all(d.served_by == "champion" and d.source == Source.MODEL for d in after)
    assert rollout.share == 0.0 and rollout.rollback_reason == "error_rate"
    assert metrics.canary_share._value.get() == 0.0
    assert metrics.rollbacks.labels("error_rate")._value.get() - before == 1
    assert any("canary rolled back" in r.getMessage() for r in caplog.records)
    # a new challenger version starts over at the configured share
    rollout.set_challenger(Runtime(bundle, None, "registry", "v1 again"))
    assert rollout.share == 0.5


@pytest.mark.parametrize(
    ("n", "fallbacks", "errors", "expected"),
    [(19, 19, 19, None), (20, 0, 0, None), (20, 0, 2, "error_rate"), (20, 11, 0, "fallback_rate")],
)
def test_guard_verdict(n: int, fallbacks: int, errors: int, expected: str | None) -> None:
    guard = CanaryGuard(min_decisions=20, max_fallback_rate=0.5, max_error_rate=0.05)
    assert guard_verdict(n, fallbacks, errors, guard) == expected


def test_shadow_columns_migrate_and_fill_on_sqlite_and_postgres(
    tmp_path: Path, postgres_dsn: str
) -> None:
    from serving_helpers import decision_row

    old = [c for c in DECISION_COLUMNS if c not in ("shadow_score", "shadow_version")]
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as con:
        cols = ", ".join(f"{c} {DECISION_COLUMNS[c][0]}" for c in old)
        con.execute(f"CREATE TABLE decisions ({cols})")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
        cols = ", ".join(f"{c} {DECISION_COLUMNS[c][1]}" for c in old)
        con.execute(f'CREATE TABLE "{schema}".decisions ({cols})')
    try:
        for log in (
            sqlite_log(path, synchronous="off", batch_max=8),
            postgres_log(postgres_dsn, schema, batch_max=8),
        ):
            with log:
                log.append_decision(decision_row("a"))
                log.append_decision(decision_row("b"))
                log.submit_shadow("a", 0.25, "7").result(timeout=60)
                frame = log.decisions().set_index("decision_id")
            assert frame.loc["a", "shadow_score"] == 0.25
            assert frame.loc["a", "shadow_version"] == "7"
            assert frame["shadow_score"].isna()["b"]
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
