"""Every line of an import is accounted for: events + quarantined + skipped = lines.

Generated Segment exports mix every kind of line (mapped, ignored and unknown track names,
page names inside and outside the funnel, other calls, broken JSON, blank lines, bad values
and timestamps); whatever the mix, each line is counted exactly once, each quarantined line
keeps its text and number, and no line becomes two events.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_factory import REPO

from features.ingest.importers.mapping import SegmentMapping, load_mapping
from features.ingest.importers.segment import map_messages

MAPPING = load_mapping(REPO / "configs" / "mappings" / "segment.yaml", SegmentMapping)
MAPPING = MAPPING.model_copy(update={"ignore_track": ["Experiment Viewed"]})
FUNNEL = ("welcome", "profile", "identity_verification")


def _message(i: int, kind: str, name: str, value: object, ts: str) -> str:
    message: dict = {"type": kind, "messageId": f"m{i}", "anonymousId": "a1", "timestamp": ts}
    if kind == "track":
        message["event"] = name
        message["properties"] = {"step": "profile", "depth": value, "duration_s": value}
    elif kind in ("page", "screen"):
        message["name"] = name
    return json.dumps(message)


_LINE = st.one_of(
    st.tuples(
        st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]),
        st.sampled_from(
            [
                "Screen Scrolled",
                "Help Hovered",
                "Experiment Viewed",
                "Coupon Applied",
                "Welcome",
                "Identity Verification",
                "Pricing",
                "profile",
            ]
        ),
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.just("x")),
        st.sampled_from(["2024-05-06T08:00:00Z", "2024-05-06T08:00:00", "soon"]),
    ),
    st.sampled_from(["", "   ", "{not json", "[1, 2]", "null"]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_LINE, max_size=40))
def test_every_line_is_imported_quarantined_or_skipped_once(drawn) -> None:
    lines = [d if isinstance(d, str) else _message(i, *d) for i, d in enumerate(drawn)]
    result = map_messages(lines, MAPPING, source="gen", steps=FUNNEL)
    s = result.summary
    assert s.records_in == len(lines)
    assert s.events + sum(s.quarantined.values()) + sum(s.skipped.values()) == len(lines)
    assert s.skipped.get("blank line", 0) == sum(not line.strip() for line in lines)
    ids = result.events["event_id"].to_pylist()
    assert len(ids) == len(set(ids))  # one event per line at most
    for row in result.quarantine.to_pylist():
        assert row["record"] == lines[row["line"] - 1]
    assert set(result.events["step"].drop_null().to_pylist()) <= set(FUNNEL)
