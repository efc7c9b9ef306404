"""The PostgreSQL decision log under faults: a restart, a black-holed connection.

Issue 11: after a PostgreSQL restart /outcome answered 500 until the worker restarted (the
reader connection was never reopened); with PostgreSQL hung, /livez did not answer for 20 s
and a /score got 504 after 30 s yet its decision was written afterwards. Own cluster
(initdb + pg_ctl) on a random port, a black-hole TCP proxy in front of it.
"""

from __future__ import annotations

import time
import uuid

import pytest
from fault_engine import decide_all, fault_engine, shown_users, trigger_request
from fault_limits import ANSWER_LIMIT_S, HANG_S, LOOP_STALL_LIMIT_S, RECOVERY_LIMIT_S
from fault_servers import BlackHoleProxy, PostgresServer
from serving_helpers import decision_row

from core.vocabulary import ActionType
from serving.caps import CapRequest, MemoryCapStore
from serving.decision_log import DecisionLogError, postgres_log

CALL_TIMEOUT_S = 3.0  # the log's client-side deadline in these tests (HANG_S is far longer)


@pytest.fixture(scope="module")
def pg():
    try:
        server = PostgresServer()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no throw-away PostgreSQL: {exc}")
    yield server
    server.destroy()


def _schema() -> str:
    return f"faults_{uuid.uuid4().hex[:10]}"


def test_outcome_lookup_works_after_a_postgres_restart(pg) -> None:
    log = postgres_log(pg.dsn, _schema(), batch_max=16, call_timeout_s=CALL_TIMEOUT_S)
    try:
        log.append_decision(decision_row("before"))
        assert log.has_decision("before")
        pg.restart()
        assert log.has_decision("before")  # the reader reconnects (it used to stay closed)
        try:  # the writer learns of the restart on its first batch, then reconnects
            log.append_decision(decision_row("after"))
        except DecisionLogError:
            log.append_decision(decision_row("after"))
        assert log.has_decision("after")
    finally:
        log.close()


def test_hung_postgres_answers_503_within_budget_keeps_nothing_and_frees_the_slot(
    pg, policy_cfg, signals_cfg
) -> None:
    proxy = BlackHoleProxy(pg.port)
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
    log = postgres_log(dsn, _schema(), batch_max=16, call_timeout_s=CALL_TIMEOUT_S)
    caps = MemoryCapStore(policy_cfg.caps)
    engine = fault_engine(
        policy_cfg, signals_cfg, caps=caps, log=log, log_commit_ms=500, lookup_ms=300
    )
    first, *users = shown_users(policy_cfg, 5, prefix="pg")
    try:
        [ok], _, _ = decide_all(engine, [trigger_request(first)])
        assert ok.action == ActionType.CONTEXTUAL_TIP
        proxy.black_hole = True
        results, seconds, stall = decide_all(engine, [trigger_request(u) for u in users])
        assert all(isinstance(r, DecisionLogError) for r in results), results
        assert max(seconds) < ANSWER_LIMIT_S < HANG_S
        assert stall < LOOP_STALL_LIMIT_S, f"event loop stalled {stall:.3f} s"
        print(
            f"measured: PostgreSQL black-holed, {len(users)} decisions 503 in <= "
            f"{max(seconds):.3f} s, worst loop stall {stall * 1000:.1f} ms"
        )
        lookups, seconds, stall = decide_all(engine, [ok.decision_id] * 3, outcome=True)
        assert all(isinstance(r, DecisionLogError) for r in lookups), lookups
        assert max(seconds) < ANSWER_LIMIT_S and stall < LOOP_STALL_LIMIT_S
        # the slots of the unanswered decisions went back: the same request is allowed again
        time.sleep(0.2)  # the release runs on the caps pool
        for u in users:
            req = trigger_request(u)
            probe = CapRequest(u, req.session_id, "other-episode", ActionType.GUIDE, req.now, "UTC")
            assert caps.acquire(probe).allowed, "a 503 decision kept its cap slot"
        proxy.black_hole = False
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        while time.monotonic() < deadline:
            [after], _, _ = decide_all(engine, [trigger_request(first, now=ok.request.now + 60)])
            if not isinstance(after, Exception):
                break
            time.sleep(0.2)
        assert not isinstance(after, Exception), after
        for u in users:  # nothing answered 503 was written, then or later
            assert not log.has_decision(f"d-{u}-{trigger_request(u).now}")
    finally:
        proxy.black_hole = False
        engine.close()
        proxy.close()


def test_an_unreachable_postgres_at_start_says_cause_and_fix() -> None:
    from fault_servers import free_port

    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/test"  # nothing listens
    with pytest.raises(DecisionLogError, match=r"(?s)unreachable.*decision_log\.dsn"):
        postgres_log(dsn, _schema(), batch_max=16)
