"""`intent traffic`: a short load of simulated traffic at a running server.

Shadow, canary, the live dashboard and the drift gauges only show something once a server
has answered requests and heard outcomes. This replays built decision points the way the
dispatcher would call: one `POST /score` per point, carrying the session's signals at that
moment (the point-in-time row of the training frame, `features.store.repo.historical_frame`,
so the served features are the ones the model was trained on), then one `POST /outcome`
with what the data says happened next (`label` 1 -> `abandoned`, 0 -> `step_completed`).

- Requests carry no `ts`: they are decisions made now, so the dashboard's recent windows
  and the drift monitor see them; user aggregates come from the server's online store.
- `Shift`s move request signals on purpose (`pause_s=+30`, `scroll_depth=*0.5`), clipped
  to what the API accepts: a drift drill without touching the data.
- The outcomes are the data's, not a response to the served action: a replay exercises the
  plumbing and the statistics, it cannot show that a challenger helps users.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.layout import Layout
from core.policy_config import SIGNAL_NAMES
from core.vocabulary import Outcome
from features.signals import signal_range

_SHIFT = re.compile(r"^\s*(?P<feature>\w+)\s*=\s*(?P<op>[+*-])\s*(?P<amount>\d+(\.\d*)?|\.\d+)\s*$")
OUTCOME_OF_LABEL = {1: Outcome.ABANDONED, 0: Outcome.STEP_COMPLETED}


class TrafficError(ValueError):
    """The traffic cannot be built or sent (no features built, bad shift, server down)."""


@dataclass(frozen=True)
class Shift:
    """`feature` moved by `amount`: added (`+`, `-`) or multiplied (`*`)."""

    feature: str
    op: str
    amount: float

    def apply(self, value: float) -> float:
        moved = value * self.amount if self.op == "*" else value + self.amount
        low, high = signal_range(self.feature)
        return min(max(moved, low), high)


def parse_shift(text: str) -> Shift:
    """`pause_s=+30`, `pause_s=-5` or `scroll_depth=*0.5`; the feature must be a signal a
    request may carry (the others come from the server's online store)."""
    match = _SHIFT.match(text)
    if match is None:
        raise TrafficError(f"shift {text!r}: write FEATURE=+X, FEATURE=-X or FEATURE=*X")
    feature, op = match["feature"], match["op"]
    if feature not in SIGNAL_NAMES:
        raise TrafficError(
            f"shift {text!r}: {feature} is not a request signal; one of "
            f"{', '.join(sorted(SIGNAL_NAMES))}"
        )
    amount = float(match["amount"])
    return Shift(feature, "+" if op == "-" else op, -amount if op == "-" else amount)


def sample_points(layout: Layout, n: int, seed: int) -> pd.DataFrame:
    """`n` decision points (a seeded sample, in time order) with their point-in-time features,
    as training sees them. Needs `intent features build` and `intent features apply`."""
    from core.settings import load_config
    from features.store.config import FeatureStoreConfig
    from features.store.repo import ServiceNotApplied, service_frame
    from training.frame import DECISION_POINTS_FILE

    path = layout.features / DECISION_POINTS_FILE
    if not path.exists():
        raise TrafficError(f"{path}: not found; run `intent features build` first")
    points = pd.read_parquet(path)
    if points.empty:
        raise TrafficError(f"{path}: no decision points to replay")
    picked = points.sample(n=min(n, len(points)), random_state=seed)
    picked = picked.sort_values("request_ts", kind="stable").reset_index(drop=True)
    try:
        frame, _ = service_frame(layout, load_config(FeatureStoreConfig, layout=layout), picked)
    except ServiceNotApplied as exc:
        raise TrafficError(str(exc)) from exc
    return frame


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def build_requests(
    frame: pd.DataFrame, shifts: Sequence[Shift] = ()
) -> list[tuple[dict[str, Any], Outcome | None]]:
    """One (`/score` body, outcome to post) per row: the row's request signals (missing ones
    left to the server), shifted, and the outcome its label records."""
    signal_cols = [c for c in frame.columns if c in SIGNAL_NAMES]
    by_feature = {s.feature: s for s in shifts}
    out = []
    for row in frame.to_dict("records"):
        signals = {}
        for name in signal_cols:
            value = row[name]
            if value is None or pd.isna(value):
                continue
            value = float(value)
            if name in by_feature:
                value = by_feature[name].apply(value)
            low, high = signal_range(name)
            signals[name] = min(max(value, low), high)
        body = {
            "user_id": str(row["user_id"]),
            "session_id": str(row["session_id"]),
            "step": str(row["step"]),
            "moment": _text(row.get("moment")),
            "episode": _text(row.get("episode")),
            "device": _text(row.get("device")),
            "channel": _text(row.get("channel")),
            "signals": signals,
        }
        label = row.get("label")
        outcome = None if label is None or pd.isna(label) else OUTCOME_OF_LABEL[int(label)]
        out.append(({k: v for k, v in body.items() if v is not None}, outcome))
    return out


@dataclass
class TrafficReport:
    """What the server answered: counts only, JSON-ready."""

    url: str
    requests: int = 0
    scored: int = 0
    outcomes_posted: int = 0
    outcomes_recorded: int = 0
    errors: Counter = field(default_factory=Counter)  # "POST /score 503" -> n
    by_source: Counter = field(default_factory=Counter)
    by_arm: Counter = field(default_factory=Counter)  # canary arm (or "holdout" / "none")
    by_model_version: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.requests,
            "scored": self.scored,
            "outcomes_posted": self.outcomes_posted,
            "outcomes_recorded": self.outcomes_recorded,
            "errors": dict(self.errors),
            "by_source": dict(self.by_source),
            "by_arm": dict(self.by_arm),
            "by_model_version": dict(self.by_model_version),
            "elapsed_s": round(self.elapsed_s, 2),
            "requests_per_s": round(self.scored / self.elapsed_s, 1) if self.elapsed_s else None,
        }


def canary_arm(decision: dict[str, Any]) -> str:
    """Who served a decision: `champion` / `challenger` (its arm's `canary=` part),
    `holdout`, or `none` while no canary runs."""
    if decision.get("holdout"):
        return "holdout"
    arm = decision.get("arm") or ""
    return arm.rsplit("canary=", 1)[1].split(",")[0] if "canary=" in arm else "none"


def send(
    url: str,
    requests: Sequence[tuple[dict[str, Any], Outcome | None]],
    *,
    token: str | None,
    clients: int = 4,
    timeout_s: float = 30.0,
    progress: Callable[[int], None] = lambda _: None,
) -> TrafficReport:
    """Post every request, then its outcome, on `clients` keep-alive connections."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    report = TrafficReport(url=url.rstrip("/"), requests=len(requests))
    n = max(1, min(clients, len(requests)))
    chunks = [requests[i::n] for i in range(n)]

    def one_client(chunk: Sequence[tuple[dict[str, Any], Outcome | None]]) -> Iterator[dict]:
        with httpx.Client(base_url=report.url, headers=headers, timeout=timeout_s) as client:
            for body, outcome in chunk:
                yield _one(client, body, outcome)

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            for results in pool.map(lambda c: list(_progressing(one_client(c), progress)), chunks):
                for result in results:
                    _count(report, result)
    except httpx.TransportError as exc:
        raise TrafficError(
            f"{report.url}: {type(exc).__name__}: {exc}; is the server running?"
        ) from None
    report.elapsed_s = time.perf_counter() - started
    return report


def _progressing(results: Iterator[dict], progress: Callable[[int], None]) -> Iterator[dict]:
    for result in results:
        progress(1)
        yield result


def _one(client: Any, body: dict[str, Any], outcome: Outcome | None) -> dict[str, Any]:
    response = client.post("/score", json=body)
    if response.status_code != 200:
        return {"error": f"POST /score {response.status_code}"}
    decision = response.json()
    result: dict[str, Any] = {"decision": decision}
    if outcome is not None:
        posted = client.post(
            "/outcome", json={"decision_id": decision["decision_id"], "outcome": outcome.value}
        )
        result["outcome"] = posted.status_code
    return result


def _count(report: TrafficReport, result: dict[str, Any]) -> None:
    if "error" in result:
        report.errors[result["error"]] += 1
        return
    decision = result["decision"]
    report.scored += 1
    report.by_source[decision["fallback_reason"] or decision["source"]] += 1
    report.by_arm[canary_arm(decision)] += 1
    report.by_model_version[decision["model_version"] or "rules"] += 1
    if "outcome" in result:
        report.outcomes_posted += 1
        if result["outcome"] == 200:
            report.outcomes_recorded += 1
        else:
            report.errors[f"POST /outcome {result['outcome']}"] += 1
