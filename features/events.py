"""The canonical event: one definition for batches (pyarrow / pandas) and single events (pydantic).

Every importer maps its source onto these columns, every job reads them, and the scoring
API validates single events with the pydantic model built from the same field list.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa
from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    model_validator,
)


class EventType(StrEnum):
    """Known event types; anything else is quarantined."""

    VIEW = "view"  # a screen / page of a funnel step was shown
    CLICK = "click"  # a successful click; target tells which element
    CTA_FAIL = "cta_fail"  # a click on the step's call to action that did not go through
    ADD_TO_CART = "add_to_cart"  # an item put in the cart (shops): progress, not a CTA click
    SCROLL = "scroll"  # value = scroll depth reached on the screen, percent 0..100
    HOVER = "hover"  # value = hover duration in seconds; target "help" for help affordances
    KEY = "key"  # keyboard navigation (Tab, arrows, Enter on a focused element); target = key
    BACK = "back"  # back navigation to the previous screen
    FIELD_ERROR = "field_error"  # a form field rejected the input
    HELP_OPEN = "help_open"  # the user opened help / FAQ on their own
    EXIT_INTENT = "exit_intent"  # the client saw the pointer leave / tab hidden / close attempt
    STEP_COMPLETE = "step_complete"  # the funnel step was completed
    GOAL = "goal"  # the funnel's goal was reached (onboarding done, purchase)
    EXIT = "exit"  # the session ended (tab closed, app backgrounded for good)
    TRIGGER_SHOWN = "trigger_shown"  # an intervention was shown; target = action type
    TRIGGER_OUTCOME = "trigger_outcome"  # the user's answer to it; target = outcome
    IDENTIFY = "identify"  # anonymous id linked to a user id


# Types whose `value` is a scroll depth in percent; every other `value` is a non-negative
# amount (seconds or a count).
DEPTH_TYPES = frozenset({EventType.SCROLL})
DEPTH_RANGE = (0.0, 100.0)

# Events the system itself writes; they are not user interactions and never reset a pause.
SYSTEM_TYPES = frozenset({EventType.TRIGGER_SHOWN, EventType.TRIGGER_OUTCOME, EventType.IDENTIFY})


@dataclass(frozen=True)
class Column:
    """One column of the canonical event table."""

    name: str
    arrow: pa.DataType
    python: Any
    required: bool
    doc: str


TS_TYPE = pa.timestamp("us", tz="UTC")

COLUMNS: tuple[Column, ...] = (
    Column("event_id", pa.string(), str, True, "idempotency key; duplicates are removed"),
    Column("user_id", pa.string(), str, False, "known user; user_id or anonymous_id is required"),
    Column("anonymous_id", pa.string(), str, False, "device / cookie id before identification"),
    Column("session_id", pa.string(), str, False, "derived by 30-min inactivity when absent"),
    Column("ts", TS_TYPE, AwareDatetime, True, "event time, UTC"),
    Column("type", pa.string(), EventType, True, "one of EventType"),
    Column("step", pa.string(), str, False, "funnel step the event happened on"),
    Column("target", pa.string(), str, False, "element, action or outcome the event refers to"),
    Column("value", pa.float64(), float, False, "scroll depth %, duration s or count"),
    Column("user_agent", pa.string(), str, False, "raw user agent (bot scoring)"),
    Column("tz", pa.string(), str, False, "IANA time zone of the user, e.g. Europe/Paris"),
    Column("device", pa.string(), str, False, "desktop / mobile / tablet"),
    Column("channel", pa.string(), str, False, "acquisition channel"),
    Column("props", pa.string(), str, False, "free properties, a JSON object as text"),
    Column("assistive", pa.bool_(), bool, False, "assistive technology in use (null: unknown)"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
EVENT_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, c.arrow, nullable=not c.required) for c in COLUMNS]
)


def empty_events() -> pa.Table:
    """A table with the canonical schema and no rows."""
    return EVENT_SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """Select and cast a table's columns to the canonical schema (missing optional ones = null).

    Raises KeyError naming the missing required columns; casting errors surface from pyarrow.
    """
    missing = [c.name for c in COLUMNS if c.required and c.name not in table.column_names]
    if missing:
        raise KeyError(f"missing required event columns: {', '.join(missing)}")
    arrays = []
    for col in COLUMNS:
        if col.name in table.column_names:
            arrays.append(table.column(col.name).cast(col.arrow))
        else:
            arrays.append(pa.nulls(table.num_rows, col.arrow))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


# Validation context key of `Event`: the funnel's steps (`Event.model_validate(row,
# context={FUNNEL_STEPS: steps})`); without it the step is not checked.
FUNNEL_STEPS = "funnel_steps"


def unknown_step(step: str | None, steps: Collection[str]) -> bool:
    """A step the funnel does not have; an event without a step (None, blank) is not one."""
    return bool(step) and step not in steps


def _check_event(event: Any, info: ValidationInfo) -> Any:
    steps = (info.context or {}).get(FUNNEL_STEPS)
    if steps is not None and unknown_step(event.step, steps):
        raise ValueError("step: not a step of the funnel (configs/funnel.yaml)")
    if not (event.user_id or event.anonymous_id):
        raise ValueError("user_id or anonymous_id is required")
    if event.value is not None:
        low, high = DEPTH_RANGE
        if event.type in DEPTH_TYPES and not low <= event.value <= high:
            raise ValueError(f"value: scroll depth must be within {low:g}..{high:g}")
        if event.type not in DEPTH_TYPES and event.value < 0:
            raise ValueError("value: durations and counts must be >= 0")
    return event


def _pydantic_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for col in COLUMNS:
        annotation = col.python if col.required else col.python | None
        default = ... if col.required else None
        extra = {"min_length": 1} if col.python is str and col.required else {}
        fields[col.name] = (annotation, Field(default, description=col.doc, **extra))
    return fields


Event = create_model(
    "Event",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True),
    __doc__="One canonical event (the API's and the importers' single-event form).",
    __validators__={"check": model_validator(mode="after")(_check_event)},
    **_pydantic_fields(),
)


def event_to_row(event: Any) -> dict[str, Any]:
    """A validated Event as a plain row for `pa.Table.from_pylist(..., schema=EVENT_SCHEMA)`."""
    row = event.model_dump()
    row["type"] = str(row["type"])
    ts: datetime = row["ts"]
    row["ts"] = ts
    return row
