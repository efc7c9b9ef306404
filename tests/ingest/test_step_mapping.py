"""Step renaming (`steps:` of a mapping) and the unit rules of mapping files."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.ingest.importers.mapping import SegmentRule, StepMapping
from features.ingest.importers.steps import map_steps

MAPPING = StepMapping.model_validate(
    {
        "exact": {"Identity Verification": "identity_verification", "/kyc": "funding"},
        "regex": [
            {"pattern": "^/onboarding/kyc", "step": "identity_verification"},
            {"pattern": "fund", "step": "funding"},
            {"pattern": "(?i)^welcome$", "step": "welcome"},
        ],
    }
)
_NAMES = st.one_of(
    st.none(),
    st.sampled_from(["Identity Verification", "/kyc", "/onboarding/kyc/upload", "WELCOME"]),
    st.text(alphabet="/onbardigkycfuWELCOMwelcome ", max_size=20),
)


def _reference(name: str | None) -> str | None:
    """The documented rule, written plainly: exact table, then the first regex, else as is."""
    if name is None:
        return None
    if name in MAPPING.exact:
        return MAPPING.exact[name]
    for rule in MAPPING.regex:
        if re.search(rule.pattern, name):
            return rule.step
    return name


@settings(max_examples=200, deadline=None)
@given(st.lists(_NAMES, max_size=30))
def test_exact_first_then_the_first_matching_regex_else_unchanged(names) -> None:
    mapped = map_steps(pa.array(names, pa.string()), MAPPING).to_pylist()
    assert mapped == [_reference(n) for n in names]


def test_exact_beats_a_regex_that_also_matches() -> None:
    names = pa.array(["/kyc", "/onboarding/kyc", "/funding", None, "Welcome"])
    assert map_steps(names, MAPPING).to_pylist() == [
        "funding",
        "identity_verification",
        "funding",
        None,
        "welcome",
    ]


def test_bad_regex_and_mismatched_units_are_mapping_errors() -> None:
    with pytest.raises(ValidationError, match="is not a valid regex"):
        StepMapping.model_validate({"regex": [{"pattern": "(unclosed", "step": "welcome"}]})
    with pytest.raises(ValidationError, match="scroll values take unit percent or fraction"):
        SegmentRule.model_validate({"type": "scroll", "value": {"path": "p.d", "unit": "ms"}})
    with pytest.raises(ValidationError, match="hover values take unit s or ms"):
        SegmentRule.model_validate({"type": "hover", "value": {"path": "p.d", "unit": "fraction"}})
    with pytest.raises(ValidationError, match="only `value` takes a unit"):
        SegmentRule.model_validate({"type": "view", "step": {"path": "name", "unit": "s"}})
