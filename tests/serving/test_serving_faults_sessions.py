"""The live-session assistive flag is read off the event loop: a hung session store costs
the flag (the request's own flag still counts), never the loop.

Before the fix the engine read the session store inline on every decision, so a store that
hangs (SQLite waiting out its 10 s busy timeout on a locked file, a slow disk) froze the
worker. SQLite in WAL mode does not let a second process block readers while the store's
own connection is open, so the hang is injected at the store's interface: a real
`SqliteSessionStore` whose `get` first waits on an event the test releases.
"""

from __future__ import annotations

import threading

from fault_engine import budgets, decide_all, shown_users, trigger_request
from fault_limits import ANSWER_LIMIT_S, HANG_S, LOOP_STALL_LIMIT_S

from core.vocabulary import ActionType
from serving.caps import MemoryCapStore
from serving.config import ColdStart, ExplainConfig
from serving.decision_log import memory_log
from serving.engine import DecisionEngine, Runtime
from serving.sessions import SqliteSessionStore


class HungSessions(SqliteSessionStore):
    """A real SQLite session store whose reads hang until `release` is set."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()

    def get(self, session_id):
        self.release.wait(HANG_S)
        return super().get(session_id)


def test_a_hung_session_store_does_not_freeze_the_loop(policy_cfg, signals_cfg, tmp_path) -> None:
    sessions = HungSessions(tmp_path / "sessions.db", signals_cfg, 1800.0)
    engine = DecisionEngine(
        policy_cfg,
        signals_cfg,
        runtime=Runtime(None, None, "rules", "test", ""),
        caps=MemoryCapStore(policy_cfg.caps),
        log=memory_log(),
        explain=ExplainConfig(top_k=3, candidates=6),
        cold_start=ColdStart.UNKNOWN_USER_AND_SESSION,
        sessions=sessions,
        id_factory=lambda req: f"d-{req.user_id}-{req.now}",
        budgets=budgets(lookup_ms=200),
    )
    users = shown_users(policy_cfg, 4)
    try:
        decisions, seconds, stall = decide_all(engine, [trigger_request(u) for u in users])
        sessions.release.set()
        assert all(not isinstance(d, Exception) for d in decisions), decisions
        # decided without the session flag: a hesitating (not assistive) user gets help
        assert [d.action for d in decisions] == [ActionType.CONTEXTUAL_TIP] * len(users)
        assert max(seconds) < ANSWER_LIMIT_S < HANG_S
        assert stall < LOOP_STALL_LIMIT_S, f"event loop stalled {stall:.3f} s"
    finally:
        sessions.release.set()
        engine.close()
        sessions.close()
