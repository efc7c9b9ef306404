"""Bots: a configurable share, automation user agents, fast regular gaps, no scroll or hover."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc
from sim_helpers import Configs, epoch_seconds

AUTOMATION = re.compile(r"headless|python-requests|bot\b|puppeteer|selenium|curl", re.I)


def _gaps_by_session(events) -> dict[str, list[float]]:
    ordered = events.sort_by([("session_id", "ascending"), ("ts", "ascending")])
    gaps: dict[str, list[float]] = defaultdict(list)
    last: dict[str, float] = {}
    for sid, at in zip(
        ordered["session_id"].to_pylist(), epoch_seconds(ordered["ts"]), strict=True
    ):
        if sid in last:
            gaps[sid].append(at - last[sid])
        last[sid] = at
    return gaps


def test_bots_are_distinguishable(cfgs: Configs, small_run) -> None:
    users = small_run.users
    bots = set(pc.filter(users["user_id"], users["is_bot"]).to_pylist())
    share = len(bots) / users.num_rows
    assert abs(share - cfgs.sim.population.bot_share) < 0.03
    assert bots

    events = small_run.events
    is_bot = pc.is_in(events["user_id"], value_set=pa.array(sorted(bots)))
    bot_events = events.filter(is_bot)
    human_events = events.filter(pc.invert(is_bot))
    # user agents: every bot declares automation, no human does
    assert all(AUTOMATION.search(ua) for ua in set(bot_events["user_agent"].to_pylist()))
    assert not any(AUTOMATION.search(ua) for ua in set(human_events["user_agent"].to_pylist()))
    # no scroll or hover from scripts, plenty from humans
    assert not set(bot_events["type"].to_pylist()) & {"scroll", "hover"}
    assert {"scroll", "hover"} <= set(human_events["type"].to_pylist())

    def cv(gaps: list[float]) -> float:
        return statistics.pstdev(gaps) / statistics.fmean(gaps)

    bot_gaps = [g for sid, g in _gaps_by_session(bot_events).items() if len(g) >= 5]
    human_gaps = [g for sid, g in _gaps_by_session(human_events).items() if len(g) >= 5]
    assert bot_gaps and human_gaps
    assert max(cv(g) for g in bot_gaps) < 0.15  # a script's clock
    assert statistics.median(cv(g) for g in human_gaps) > 0.6  # people
    assert max(statistics.median(g) for g in bot_gaps) < 2.0  # and fast
