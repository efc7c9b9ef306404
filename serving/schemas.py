"""The HTTP contract: pydantic request / response models and the checks that need config.

Structural checks (types, finite numbers, known signal names and their physical ranges,
time zones) live in the models; checks that depend on config (funnel steps, id lengths,
batch sizes, clock skew) live in `check_*` functions that raise a pydantic `ValidationError`
with the offending field's location, so every bad input becomes a 400 naming the field.
Inputs are never echoed into errors or logs (`hide_input_in_errors`): they may hold user ids
or free text.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from core.policy_config import SIGNAL_NAMES
from core.vocabulary import ActionType, MomentType, Outcome, Source
from features.events import Event, unknown_step
from features.signals import signal_range
from serving.decision import Decision, DecisionRequest, FallbackReason, reason_dict


@functools.lru_cache(maxsize=1024)
def known_zone(tz: str) -> bool:
    """An IANA zone name; anything else (a 10,000-character name: OSError) is False."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


_STRICT = ConfigDict(
    extra="forbid", allow_inf_nan=False, str_strip_whitespace=True, hide_input_in_errors=True
)

# A number that is a JSON number: `"14"` and `true` are mistakes of the caller, not 14 and 1.
StrictNumber = Annotated[float, Strict()]


class ScoreRequest(BaseModel):
    """The dispatcher's call at a micro-moment. Only user, session and step are required."""

    model_config = _STRICT

    user_id: str = Field(min_length=1, description="the user (or anonymous id)")
    session_id: str = Field(min_length=1)
    step: str = Field(min_length=1, description="funnel step, one of configs/funnel.yaml")
    moment: MomentType | None = Field(None, description="the micro-moment the dispatcher saw")
    signals: dict[str, StrictNumber] = Field(
        default_factory=dict,
        description="live signals (features.signals names), overriding stored ones",
    )
    ts: AwareDatetime | None = Field(None, description="decision time; default: now")
    episode: str | None = Field(None, min_length=1, description="micro-moment episode id")
    tz: str | None = Field(
        None, min_length=1, description="IANA time zone of the user (daily caps)"
    )
    device: str | None = Field(None, min_length=1, description="desktop / mobile / tablet")
    channel: str | None = Field(None, min_length=1, description="acquisition channel")
    returning: Annotated[bool, Strict()] | None = Field(
        None, description="returning user (cohort overrides); a JSON boolean"
    )
    assistive: Annotated[bool, Strict()] | None = Field(
        None,
        description="assistive technology in use (screen reader, keyboard only): no "
        "pause-triggered help, no auto-playing video, never scored as a bot; null = false",
    )

    @field_validator("signals")
    @classmethod
    def _known_signals(cls, signals: dict[str, float]) -> dict[str, float]:
        for name, value in signals.items():
            if name not in SIGNAL_NAMES:
                raise ValueError(f"unknown signal {name!r}")
            low, high = signal_range(name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be within {low:g}..{high:g}")
        return signals

    @field_validator("tz")
    @classmethod
    def _zone(cls, tz: str | None) -> str | None:
        if tz is not None and not known_zone(tz):
            raise ValueError("unknown IANA time zone")
        return tz

    def to_engine(self, now: float | None = None) -> DecisionRequest:
        return DecisionRequest(
            user_id=self.user_id,
            session_id=self.session_id,
            step=self.step,
            now=self.ts.timestamp() if self.ts is not None else (now or time.time()),
            moment=self.moment,
            signals=self.signals,
            episode=self.episode,
            tz=self.tz,
            device=self.device,
            channel=self.channel,
            returning=self.returning,
            assistive=bool(self.assistive),
        )


class EventIn(Event):  # type: ignore[misc, valid-type]
    """`features.events.Event` for the API: same fields and rules, inputs kept out of errors,
    and `value` must be a JSON number (`"14"` or `true` is rejected, not coerced)."""

    model_config = ConfigDict(
        **{
            **Event.model_config,
            "hide_input_in_errors": True,
            # user_id or anonymous_id is required (the model validator's rule)
            "json_schema_extra": {
                "anyOf": [{"required": ["user_id"]}, {"required": ["anonymous_id"]}]
            },
        }
    )

    value: StrictNumber | None = Field(None, description="scroll depth %, duration s or count")
    assistive: Annotated[bool, Strict()] | None = Field(
        None, description="assistive technology in use; a JSON boolean (null: unknown)"
    )


class ActionOut(BaseModel):
    type: ActionType
    content: str | None = Field(description="content key for the dispatcher")


class ReasonOut(BaseModel):
    kind: str
    name: str
    value: float | None
    detail: str


class ScoreResponse(BaseModel):
    decision_id: str
    score: float = Field(description="intent score: calibrated probability of abandonment")
    band: str
    moment: MomentType | None
    episode: str
    action: ActionOut
    reasons: list[ReasonOut]
    source: Source
    fallback_reason: FallbackReason | None
    model_version: str | None
    arm: str | None
    holdout: bool
    would_action: ActionType
    capped: bool
    cap_reason: str | None
    latency_ms: float

    @classmethod
    def of(cls, d: Decision) -> ScoreResponse:
        """The answer for `d`: one pydantic-core validation of plain data, ~3x cheaper than
        building the nested models field by field in Python."""
        return cls.model_validate(
            {
                "decision_id": d.decision_id,
                "score": d.score,
                "band": d.band,
                "moment": d.moment,
                "episode": d.episode,
                "action": {"type": d.action, "content": d.content},
                "reasons": [reason_dict(r) for r in d.reasons],
                "source": d.source,
                "fallback_reason": d.fallback_reason,
                "model_version": d.model_version,
                "arm": d.arm,
                "holdout": d.holdout,
                "would_action": d.would_action,
                "capped": d.capped,
                "cap_reason": d.cap_reason,
                "latency_ms": round(d.latency_ms, 3),
            }
        )


class ScoreBatchResponse(BaseModel):
    decisions: list[ScoreResponse]


class OutcomeRequest(BaseModel):
    model_config = _STRICT

    decision_id: str = Field(min_length=1)
    outcome: Outcome
    ts: AwareDatetime | None = None


class OutcomeResponse(BaseModel):
    decision_id: str
    outcome: Outcome
    recorded: bool


class RejectedEvent(BaseModel):
    """One event of a POST /events that was not applied (quarantined with the reason)."""

    index: int = Field(description="position in the request's `events`")
    event_id: str | None = Field(description="its event_id, when it had a text one")
    fields: list[str] = Field(description="the offending fields (dotted)")
    reason: str


class EventsResponse(BaseModel):
    accepted: int
    duplicates: list[str] = Field(description="event ids seen before (or twice in the request)")
    late: list[str] = Field(description="older than their session's state: quarantined")
    sessions: list[str]
    pushed: bool | None = Field(description="live state pushed to Feast (None: no store)")
    rejected: list[RejectedEvent] = Field(
        description="invalid events: not applied, quarantined (api-rejected-events)"
    )


class EventsRequest(BaseModel):
    """The documented body of POST /events (each event is validated on its own)."""

    model_config = _STRICT

    events: list[EventIn] = Field(min_length=1)  # type: ignore[valid-type]


class EventsEnvelope(BaseModel):
    """What POST /events parses first: an object with a non-empty `events` array."""

    model_config = _STRICT

    events: list[Any] = Field(min_length=1)


class ScoreBatchRequest(BaseModel):
    model_config = _STRICT

    requests: list[ScoreRequest] = Field(min_length=1)


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="path to the offending field")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer (400, 401, 404, 413, 415, 503)."""

    error: str = Field(description="one line: what is wrong")
    detail: list[ErrorDetail]


class LiveOut(BaseModel):
    status: str


class DependencyHealth(BaseModel):
    """One dependency in GET /readyz: a status and a public reason code (no paths, no
    exception text)."""

    status: Literal["ok", "degraded", "down"]
    reason: str


class ReadyOut(BaseModel):
    """GET /readyz: whether decisions can be answered, how well, and each dependency."""

    status: Literal["ready", "unavailable"] = Field(
        description="unavailable (503) only when a critical dependency (the decision log) is down"
    )
    degraded: bool = Field(description="any dependency not ok: serving a fallback, or slower")
    dependencies: dict[str, DependencyHealth]
    model_source: str = Field(description="registry | bundle | rules")
    model_version: str | None


class ModelInfo(BaseModel):
    source: str
    detail: str
    model_version: str | None
    model_name: str | None
    run_id: str | None
    feature_service: str | None
    metrics: dict[str, float]
    thresholds: dict[str, float]
    training_window: dict[str, Any] | None
    features: int
    online_store: str


class ReloadResponse(BaseModel):
    changed: bool
    model: ModelInfo


# The dispatcher's minimal request, as the README and `intent serve` show it.
EXAMPLE_REQUEST: dict[str, Any] = {
    "user_id": "u-1",
    "session_id": "s-1",
    "step": "identity_verification",
    "moment": "pause",
    "signals": {"pause_s": 14, "scroll_depth": 30, "cta_fails": 0},
}


EXAMPLE_EVENTS: dict[str, Any] = {
    "events": [
        {
            "event_id": "e-1",
            "user_id": "u-1",
            "session_id": "s-1",
            "ts": "2026-01-05T12:00:00Z",
            "type": "view",
            "step": "identity_verification",
        },
        {
            "event_id": "e-2",
            "user_id": "u-1",
            "session_id": "s-1",
            "ts": "2026-01-05T12:00:04Z",
            "type": "scroll",
            "step": "identity_verification",
            "value": 30,
        },
    ]
}

EXAMPLE_OUTCOME: dict[str, Any] = {
    "decision_id": "0190f5c2-0000-7000-8000-000000000000",
    "outcome": "accepted",
}


def example_curl(port: int, host: str = "localhost", token_env: str | None = None) -> str:
    """A curl command that asks the server for one decision."""
    import json

    auth = f' -H "Authorization: Bearer ${token_env}"' if token_env else ""
    return (
        f"curl -s -X POST http://{host}:{port}/score -H 'Content-Type: application/json'{auth} "
        f"-d '{json.dumps(EXAMPLE_REQUEST, separators=(',', ':'))}'"
    )


# --- checks that need config ---------------------------------------------------------------


@dataclass(frozen=True)
class RequestRules:
    """The config-dependent limits a request is checked against."""

    steps: frozenset[str]
    max_id_length: int
    future_tolerance_s: float
    max_batch: int
    max_events: int
    max_label_length: int
    max_ts_age_s: float


class FieldProblems:
    """Collects (location, message) pairs; raises one ValidationError for all of them."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.items: list[InitErrorDetails] = []

    def add(self, loc: Sequence[str | int], kind: str, message: str) -> None:
        self.items.append(
            InitErrorDetails(
                type=PydanticCustomError(kind, message.replace("{", "(").replace("}", ")")),
                loc=tuple(loc),
                input=None,
            )
        )

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError.from_exception_data(self.title, self.items, hide_input=True)


def check_ids(
    problems: FieldProblems,
    loc: Sequence[str | int],
    values: Iterable[tuple[str, Any]],
    max_length: int,
) -> None:
    for name, value in values:
        if isinstance(value, str) and len(value) > max_length:
            problems.add([*loc, name], "too_long", f"longer than {max_length} characters")


def check_score(
    problems: FieldProblems,
    req: ScoreRequest,
    rules: RequestRules,
    loc: Sequence[str | int],
    now: float,
) -> None:
    if req.step not in rules.steps:
        problems.add([*loc, "step"], "unknown_step", "unknown funnel step (configs/funnel.yaml)")
    check_ids(
        problems,
        loc,
        [("user_id", req.user_id), ("session_id", req.session_id), ("episode", req.episode)],
        rules.max_id_length,
    )
    check_ids(
        problems,
        loc,
        [("device", req.device), ("channel", req.channel)],
        rules.max_label_length,
    )
    check_future(problems, [*loc, "ts"], req.ts, now, rules.future_tolerance_s)
    check_age(problems, [*loc, "ts"], req.ts, now, rules.max_ts_age_s)


def check_future(
    problems: FieldProblems,
    loc: Sequence[str | int],
    ts: datetime | None,
    now: float,
    tolerance_s: float,
) -> None:
    if ts is not None and ts.timestamp() > now + tolerance_s:
        problems.add(loc, "ts_future", f"more than {tolerance_s:g} s in the future")


def check_age(
    problems: FieldProblems,
    loc: Sequence[str | int],
    ts: datetime | None,
    now: float,
    max_age_s: float,
) -> None:
    """A time older than `limits.max_ts_age_days` is a caller's mistake (year 1), not data."""
    if ts is not None and ts.timestamp() < now - max_age_s:
        days = max_age_s / 86400
        problems.add(
            loc, "ts_too_old", f"more than {days:g} days in the past (limits.max_ts_age_days)"
        )


def check_score_request(req: ScoreRequest, rules: RequestRules, now: float) -> None:
    problems = FieldProblems("ScoreRequest")
    check_score(problems, req, rules, [], now)
    problems.raise_if_any()


def check_score_batch(requests: Sequence[ScoreRequest], rules: RequestRules, now: float) -> None:
    problems = FieldProblems("ScoreBatch")
    if not requests:
        problems.add(["requests"], "too_short", "at least one request")
    if len(requests) > rules.max_batch:
        problems.add(["requests"], "too_long", f"at most {rules.max_batch} requests per batch")
    else:
        for i, req in enumerate(requests):
            check_score(problems, req, rules, ["requests", i], now)
    problems.raise_if_any()


@dataclass(frozen=True)
class EventSplit:
    """`split_events`: the valid events, and the rejected ones with their original items."""

    valid: list[Any]
    rejected: list[RejectedEvent]
    rejected_items: list[Any]


ID_FIELDS = ("event_id", "user_id", "anonymous_id", "session_id")


def split_events(items: Sequence[Any], rules: RequestRules, now: float) -> EventSplit:
    """Validate each event on its own: one bad event must not reject the batch."""
    valid: list[Any] = []
    rejected: list[RejectedEvent] = []
    bad_items: list[Any] = []
    for i, item in enumerate(items):
        problems = FieldProblems("Event")
        event = None
        try:
            event = EventIn.model_validate(item)
        except ValidationError as exc:
            for e in exc.errors(include_url=False, include_input=False, include_context=False):
                problems.add(e["loc"], e["type"], e["msg"])
        if event is not None:
            if unknown_step(event.step, rules.steps):  # the batch validator's rule
                problems.add(["step"], "unknown_step", "unknown funnel step (configs/funnel.yaml)")
            check_ids(
                problems,
                [],
                [
                    (n, getattr(event, n))
                    for n in ("event_id", "user_id", "anonymous_id", "session_id")
                ],
                rules.max_id_length,
            )
            check_ids(
                problems,
                [],
                [("device", event.device), ("channel", event.channel)],
                rules.max_label_length,
            )
            check_future(problems, ["ts"], event.ts, now, rules.future_tolerance_s)
            check_age(problems, ["ts"], event.ts, now, rules.max_ts_age_s)
            if event.tz is not None and not known_zone(event.tz):
                problems.add(["tz"], "unknown_tz", "unknown IANA time zone")
        if not problems.items:
            valid.append(event)
            continue
        fields = [".".join(str(p) for p in d["loc"]) or "<event>" for d in problems.items]
        reasons = "; ".join(
            f"{f}: {d['type'].message()}"  # type: ignore[union-attr]
            for f, d in zip(fields, problems.items, strict=True)
        )
        event_id = item.get("event_id") if isinstance(item, dict) else None
        rejected.append(
            RejectedEvent(
                index=i,
                event_id=event_id if isinstance(event_id, str) else None,
                fields=fields,
                reason=reasons,
            )
        )
        bad_items.append(item)
    return EventSplit(valid, rejected, bad_items)
