"""The simulated online store serves what the production store would, request-time user
signals included (through the on-demand view's own function)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from loop_helpers import T0, repo_layout, small_setup

from core.vocabulary import MomentType
from features.events import EVENT_SCHEMA, conform
from features.signals import Moment, derive_user, new_state
from features.simulator.hook import MomentContext
from loop.simstore import SimulatedStore

DAY = 86_400.0


def _events(user: str, session: str, start: float) -> pa.Table:
    kinds = [("view", "welcome"), ("click", "welcome"), ("exit", "welcome")]
    rows = [
        {
            "event_id": f"{session}-{i}",
            "user_id": user,
            "session_id": session,
            "ts": datetime.fromtimestamp(start + 5 * i, UTC),
            "type": kind,
            "step": step,
        }
        for i, (kind, step) in enumerate(kinds)
    ]
    return conform(
        pa.Table.from_pylist(rows, schema=pa.schema([EVENT_SCHEMA.field(k) for k in rows[0]]))
    )


def _context(user: str, session: str, now: float, prior: pa.Table) -> MomentContext:
    moment = Moment(MomentType.PAUSE, now, "profile", "pause@profile#1")
    return MomentContext(
        user, session, now, moment, new_state(session, user), "UTC", None, None, lambda: prior
    )


def test_a_returning_users_tenure_comes_from_their_first_session(tmp_path) -> None:
    setup = small_setup(repo_layout(tmp_path), users=1, days=1)
    store = SimulatedStore({}, setup.history)
    now = T0 + 2 * DAY
    store.remember(_context("u", "u-2", now, _events("u", "u-1", T0)))
    values, user_known, session_known = store.read("u", "u-2", "profile", now)
    assert user_known and session_known
    assert values["user_first_seen_at"] == pytest.approx(T0)
    assert values["user_days_since_first_seen"] == pytest.approx(2.0, abs=1e-3)
    expected = derive_user(now, values["user_first_seen_at"])["user_days_since_first_seen"]
    assert values["user_days_since_first_seen"] == expected  # the on-demand view's function

    empty = _events("n", "n-0", T0).slice(0, 0)
    store.remember(_context("n", "n-1", now, empty))
    values, user_known, _ = store.read("n", "n-1", "profile", now)
    assert not user_known and values["user_days_since_first_seen"] is None
