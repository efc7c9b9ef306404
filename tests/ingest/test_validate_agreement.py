"""The batch validator and the single-event pydantic model give the same verdict on every row.

The API validates single events with `features.events.Event`; `intent validate` validates
batches column-wise. Generated rows mix valid and invalid values of every column; each
row's batch verdict must equal `Event`'s (the future-timestamp rule, which needs a clock,
aside), the funnel-step rule included: both get the same steps. Timestamps are generated
in the contract's forms (typed, ISO-8601 text with or without a zone, broken text);
pydantic's lax coercion of bare numbers to Unix time is not part of the contract and not
generated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_factory import NOW
from pydantic import ValidationError

from features.events import EVENT_SCHEMA, FUNNEL_STEPS, Event, EventType
from features.ingest.validate import Reason, validate_events

# Unicode White_Space (stripped by both) and characters Python calls space but Unicode does
# not (\x1c..\x1f: stripped by neither).
_SPACES = " \t\n\u00a0\u2003\u3000"
_TEXT = st.text(alphabet="ab1-_" + _SPACES + "\x1c", max_size=4)


def mostly(valid: st.SearchStrategy, edge: st.SearchStrategy, k: int = 4) -> st.SearchStrategy:
    """`valid` about k times in k + 1, else an edge case: most rows break one rule or none."""
    return st.sampled_from(range(k + 1)).flatmap(lambda i: edge if i == 0 else valid)


_OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
_AWARE = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9000, 12, 30), timezones=_OFFSETS
)
_NAIVE = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9000, 12, 30))


def _iso(dt: datetime, sep: str, zulu: bool) -> str:
    text = dt.isoformat(sep=sep)
    return text.replace("+00:00", "Z") if zulu else text


_ISO_AWARE = st.builds(_iso, _AWARE, st.sampled_from(["T", " "]), st.booleans())
_TS_EDGE_TEXT = st.one_of(
    st.none(),
    st.builds(_iso, _NAIVE, st.sampled_from(["T", " "]), st.just(False)),
    _NAIVE.map(lambda d: d.date().isoformat()),
    st.sampled_from(
        ["2025-02-30T10:00:00Z", "2025-13-01T00:00:00+00:00", "2025-03-03T25:00:00Z", "soon", ""]
    ),
    st.text(alphabet="abcT:-Z ", max_size=8),
)
_EVENT_ID = mostly(
    st.sampled_from(["e", " e ", "e\x1c"]),  # "e" becomes a unique id per row
    st.one_of(st.none(), st.sampled_from(["", "  ", "\u00a0", "\u3000", "\x1c"])),
)
_ACTOR = mostly(st.sampled_from(["u1", " u2 ", "\u00a0u3"]), st.one_of(st.none(), _TEXT), k=2)
_TYPE = mostly(
    st.sampled_from([t.value for t in EventType]),
    st.one_of(st.none(), st.sampled_from(["tap", " view", "view ", "VIEW", ""])),
)
_FUNNEL = ("welcome", "identity_verification")
_STEP = st.one_of(
    st.none(),
    mostly(
        st.sampled_from([*_FUNNEL, " welcome ", "\u00a0identity_verification"]),
        st.one_of(_TEXT, st.sampled_from(["Welcome", "browse", "identity verification"])),
    ),
)
_VALUE = mostly(
    st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([-0.0, 100.0001, -1e-12, 1e6]),
    ),
)


@st.composite
def rows(draw, typed_ts: bool) -> dict:
    ts = mostly(_AWARE, st.none()) if typed_ts else mostly(_ISO_AWARE, _TS_EDGE_TEXT)
    return {
        "event_id": draw(_EVENT_ID),
        "user_id": draw(_ACTOR),
        "anonymous_id": draw(_ACTOR),
        "session_id": draw(st.one_of(st.none(), _TEXT)),
        "ts": draw(ts),
        "type": draw(_TYPE),
        "step": draw(_STEP),
        "value": draw(_VALUE),
        "props": draw(st.one_of(st.none(), st.just('{"k": 1}'))),
    }


def _pydantic_ok(row: dict) -> bool:
    try:
        Event.model_validate(row, context={FUNNEL_STEPS: _FUNNEL})
    except ValidationError:
        return False
    return True


def _batch_table(batch: list[dict], typed_ts: bool) -> tuple[pa.Table, list[dict]]:
    """The batch as a table (typed UTC ts or text ts) and the rows with unique ids."""
    schema = pa.schema([f.with_nullable(True) for f in EVENT_SCHEMA])
    if not typed_ts:
        schema = schema.set(schema.get_field_index("ts"), pa.field("ts", pa.string()))
    fixed = []
    for i, row in enumerate(batch):
        row = dict(row)
        if row["event_id"] and "e" in row["event_id"]:  # unique: duplicates are batch-only
            row["event_id"] = row["event_id"].replace("e", f"e{i}")
        if typed_ts and row["ts"] is not None:
            row["ts"] = row["ts"].astimezone(UTC)
        fixed.append(row)
    return pa.Table.from_pylist(fixed, schema=schema), fixed


@st.composite
def batches(draw) -> tuple[list[dict], bool]:
    typed_ts = draw(st.booleans())
    return draw(st.lists(rows(typed_ts), min_size=1, max_size=25)), typed_ts


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_batch_verdict_equals_pydantic_verdict(events_cfg, generated) -> None:
    batch, typed_ts = generated
    table, fixed = _batch_table(batch, typed_ts)
    result = validate_events(table, events_cfg, NOW, steps=_FUNNEL)
    reasons = dict(
        zip(
            result.quarantine["row"].to_pylist(),
            result.quarantine["reason"].to_pylist(),
            strict=True,
        )
    )
    for i, row in enumerate(fixed):
        original = {**row, "ts": batch[i]["ts"]}  # pydantic sees what the producer sent
        # the clock and duplicates are batch-only rules (a conflict is only ever a valid row)
        batch_only = (None, Reason.TS_FUTURE.value, Reason.DUPLICATE_CONFLICT.value)
        batch_ok = reasons.get(i) in batch_only
        assert batch_ok == _pydantic_ok(original), (original, reasons.get(i))
    s = result.summary
    assert s.rows_in == result.valid.num_rows + s.quarantined_total + s.duplicates_removed
