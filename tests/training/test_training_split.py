"""Time split: windows ordered in time, no user in two splits, purged rows counted."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.config import SplitConfig
from training.frame import TrainingError
from training.split import SPLITS, assign_windows, time_split, user_keys

LOOSE = SplitConfig(validation_fraction=0.2, test_fraction=0.2, min_rows=1, min_positives=1)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def frame_of(users: list[str | None], minutes: list[int], labels: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": users,
            "session_id": [f"s{i}" for i in range(len(users))],
            "event_timestamp": pd.to_datetime([T0 + timedelta(minutes=m) for m in minutes]),
            "label": labels,
        }
    )


def assert_valid(frame: pd.DataFrame, split) -> None:
    keys = user_keys(frame).to_numpy()
    ts = frame["event_timestamp"].to_numpy()
    seen: dict[str, set[str]] = {}
    for name in SPLITS:
        for key in keys[split.rows(name)]:
            seen.setdefault(key, set()).add(name)
    assert all(len(names) == 1 for names in seen.values()), "a user is in two splits"
    windows = [ts[split.rows(s)] for s in SPLITS]
    filled = [w for w in windows if len(w)]
    for earlier, later in itertools.pairwise(filled):
        assert earlier.max() < later.min()
    total = sum(split.sizes().values()) + split.purged
    assert total == len(frame)


def test_a_user_spanning_windows_stays_in_the_latest_and_earlier_rows_are_purged() -> None:
    users = ["a", "b", "c", "d", "a", "e", "f", "g", "a", "h"]
    frame = frame_of(users, list(range(10)), [0, 1] * 5)
    cfg = LOOSE.model_copy(update={"validation_fraction": 0.3, "test_fraction": 0.3})
    split = time_split(frame, cfg)
    assert_valid(frame, split)
    # "a" appears at t=0 (train), t=4 (validation), t=8 (test): only its test row stays
    rows_of_a = {i for i, u in enumerate(users) if u == "a"}
    assert rows_of_a & set(split.test) == {8}
    assert not rows_of_a & (set(split.train) | set(split.validation))
    assert split.purged == 2


def test_anonymous_rows_are_kept_apart_by_session() -> None:
    frame = frame_of([None] * 10, list(range(10)), [0, 1] * 5)
    keys = user_keys(frame)
    assert keys.nunique() == 10 and keys.str.startswith("session:").all()
    assert time_split(frame, LOOSE).purged == 0


def test_too_few_rows_or_one_class_is_an_error_naming_the_split() -> None:
    frame = frame_of([f"u{i}" for i in range(10)], list(range(10)), [0] * 8 + [1, 1])
    with pytest.raises(TrainingError, match="train split has 0 positive"):
        time_split(frame, LOOSE)
    strict = LOOSE.model_copy(update={"min_rows": 5})
    balanced = frame_of([f"u{i}" for i in range(10)], list(range(10)), [0, 1] * 5)
    with pytest.raises(TrainingError, match="validation split has 2 rows"):
        time_split(balanced, strict)


def test_the_shared_pipeline_frame_splits_without_leakage(pipeline) -> None:
    frame = pipeline.data.frame
    split = time_split(frame, pipeline.configs.training.split)
    assert_valid(frame, split)
    assert split.validation_start < split.test_start


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 500), st.integers(0, 1)),
        min_size=8,
        max_size=80,
    ),
    fractions=st.tuples(st.floats(0.05, 0.4), st.floats(0.05, 0.4)),
)
def test_split_property_no_user_crosses_and_windows_are_ordered(rows, fractions) -> None:
    users, minutes, labels = zip(*rows, strict=True)
    frame = frame_of([f"u{u}" for u in users], list(minutes), list(labels))
    cfg = LOOSE.model_copy(
        update={"validation_fraction": fractions[0], "test_fraction": fractions[1]}
    )
    split = assign_windows(frame, cfg)  # unchecked: small / one-class windows are fine here
    assert_valid(frame, split)
    assert np.isin(split.test, np.arange(len(frame))).all()


def test_the_error_names_the_split_minimums_this_data_meets_and_they_work() -> None:
    import re

    balanced = frame_of([f"u{i}" for i in range(20)], list(range(20)), [0, 1] * 10)
    strict = LOOSE.model_copy(update={"min_rows": 6, "min_positives": 3})
    with pytest.raises(TrainingError) as caught:
        time_split(balanced, strict)
    message = str(caught.value)
    suggested = dict(re.findall(r"split\.(min_rows|min_positives): (\d+)", message))
    assert suggested == {"min_rows": "4", "min_positives": "2"}  # 4-row windows, 2 of each
    assert "configs/training.yaml" in message
    fixed = strict.model_copy(update={k: int(v) for k, v in suggested.items()})
    assert time_split(balanced, fixed).sizes() == {"train": 12, "validation": 4, "test": 4}


def test_a_window_without_a_class_says_no_minimum_can_fix_it() -> None:
    frame = frame_of([f"u{i}" for i in range(10)], list(range(10)), [0] * 8 + [1, 1])
    with pytest.raises(TrainingError, match="train window has no positive rows, which no split"):
        time_split(frame, LOOSE)
