"""The on-demand view `moment_signals` is `signals.derive()`, whoever runs it."""

from __future__ import annotations

import inspect
import math

import pytest
from feast_tables import DECISION_S, REPO_CONFIGS, epoch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.settings import load_config
from features.config import SignalsConfig
from features.signals import (
    DERIVED_FIELDS,
    SNAPSHOT_FIELDS,
    USER_DERIVED_FIELDS,
    derive,
    derive_user,
)
from features.store.definitions import derive_columns, moment_signals_udf
from features.store.online import OnlineFeatures, ReadPath

SIGNALS = load_config(SignalsConfig)
SIGNALS_JSON = SIGNALS.model_dump_json()

clock = st.floats(min_value=1.7e9, max_value=1.8e9, allow_nan=False)
maybe_clock = st.one_of(st.just(math.nan), clock)
count = st.integers(min_value=0, max_value=50).map(float)


@st.composite
def snapshots(draw) -> dict[str, float] | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None  # no stored row for this session
    row = {name: draw(count) for name in SNAPSHOT_FIELDS}
    row["events"] = max(row["events"], 1.0)
    row["reentered"] = float(draw(st.booleans()))
    row["scroll_velocity"] = draw(st.floats(-50, 50, allow_nan=False))
    for name in ("started_at", "step_entered_at", "last_interaction_at"):
        row[name] = draw(maybe_clock)
    return row


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            snapshots(),
            clock,
            st.one_of(st.none(), st.floats(0, 120)),
            st.one_of(st.none(), clock),  # the user's first-seen clock (None: user unknown)
        ),
        min_size=1,
        max_size=8,
    )
)
def test_batch_udf_equals_derive_row_by_row(rows) -> None:
    inputs: dict[str, list] = {name: [] for name in SNAPSHOT_FIELDS}
    inputs["request_ts"], inputs["step_typical_pause_s"], inputs["user_first_seen_at"] = [], [], []
    for snap, now, typical, first_seen in rows:
        for name in SNAPSHOT_FIELDS:
            inputs[name].append(None if snap is None else snap[name])
        inputs["request_ts"].append(now)
        inputs["step_typical_pause_s"].append(typical)
        inputs["user_first_seen_at"].append(first_seen)
    out = derive_columns(inputs, SIGNALS_JSON)
    assert set(out) == {*DERIVED_FIELDS, *USER_DERIVED_FIELDS}
    for i, (snap, now, typical, first_seen) in enumerate(rows):
        user = derive_user(now, math.nan if first_seen is None else first_seen)
        for name in USER_DERIVED_FIELDS:  # from the user's row, whether the session is known
            assert _same(out[name][i], user[name])
            assert (first_seen is None) is math.isnan(out[name][i])
        if snap is None:
            assert all(math.isnan(out[name][i]) for name in DERIVED_FIELDS)
            continue
        expected = derive(snap, now, SIGNALS, typical)
        for name in DERIVED_FIELDS:
            assert _same(out[name][i], expected[name])
        assert out["pause_s"][i] >= 0 or math.isnan(out["pause_s"][i])


def _same(got: float, expected: float) -> bool:
    return (math.isnan(got) and math.isnan(expected)) or got == expected


@given(first_seen=clock, a=clock, b=clock)
def test_tenure_is_days_never_negative_and_grows_with_time(first_seen, a, b) -> None:
    early, late = sorted((a, b))
    days = [derive_user(t, first_seen)["user_days_since_first_seen"] for t in (early, late)]
    assert 0 <= days[0] <= days[1]
    assert days[1] == pytest.approx(max(late - first_seen, 0) / 86_400)


def test_feast_recreates_the_udf_from_its_source_with_the_environments_config(
    tmp_path, monkeypatch
) -> None:
    """The registry re-creates the function from its source text alone (Feast's own
    `resolve_udf`, as `feast apply` stores it); it derives with the environment's
    signals.yaml, so an INTENT_CONFIGS override counts."""
    from feast.transformation.udf_rehydrate import resolve_udf

    source = inspect.getsource(moment_signals_udf)
    rebuilt = resolve_udf(udf_string=source, preferred_name=moment_signals_udf.__name__)
    assert rebuilt is not moment_signals_udf
    inputs = {name: [1.0] for name in SNAPSHOT_FIELDS}
    inputs.update(last_interaction_at=[100.0], request_ts=[130.0], step_typical_pause_s=[10.0])
    inputs.update(user_first_seen_at=[130.0 - 2 * 86_400])
    monkeypatch.delenv("INTENT_CONFIGS", raising=False)
    assert rebuilt(inputs) == derive_columns(inputs, SIGNALS_JSON)
    assert rebuilt(inputs)["pause_rel_step"] == [3.0]
    assert rebuilt(inputs)["user_days_since_first_seen"] == [2.0]
    assert rebuilt(inputs)["reentry_pause"] == [1.0]  # a 30 s pause >= the first checkpoint

    signals = (REPO_CONFIGS / "signals.yaml").read_text()
    assert "pause_checkpoints_s: [12, 30]" in signals
    (tmp_path / "signals.yaml").write_text(signals.replace("[12, 30]", "[40, 60]"))
    monkeypatch.setenv("INTENT_CONFIGS", str(tmp_path))
    assert rebuilt(inputs)["reentry_pause"] == [0.0]  # 30 s is no pause any more


def test_every_read_path_gives_the_same_vector(sqlite_store) -> None:
    """Feast running the on-demand view equals our in-process call of the same function."""
    _, cfg, _, store = sqlite_store
    readers = [OnlineFeatures(store, cfg.feature_service, path) for path in ReadPath]
    requests = [
        ("u_known", "s1", "welcome", epoch(DECISION_S)),
        ("u_known", "s1", "profile", epoch(500)),  # another step, another typical pause
        ("u_new", "s_unknown", "welcome", epoch(40)),  # no session row
        ("u_known", "s2", "nowhere", epoch(30)),  # unknown step: no typical pause
    ]  # (no stale user: FEAST_ODFV feeds Feast's rows to the function without a TTL check)
    for request in requests:
        first, *others = [reader.read(*request) for reader in readers]
        for other in others:
            assert (first.user_known, first.session_known) == (
                other.user_known,
                other.session_known,
            )
            assert list(first.values) == list(other.values)
            for name, value in first.values.items():
                assert value == pytest.approx(other.values[name]), (request, name)
    feast_run = readers[-1]
    assert feast_run.path is ReadPath.FEAST_ODFV
    assert feast_run.read(*requests[3]).values["pause_rel_step"] is None
    assert feast_run.read(*requests[0]).values["pause_s"] is not None
