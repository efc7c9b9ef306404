"""Experiment assignment: sticky, well split, mutually exclusive in a layer, holdout first."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.policy_config import ExperimentsConfig
from serving.experiments import HOLDOUT_ARM, Assigner, assign, bucket

USERS = [f"user-{i}" for i in range(20_000)]


def cfg(holdout: float = 0.05, **layer_overrides) -> ExperimentsConfig:
    layers = [
        {
            "name": "thresholds",
            "salt": "layer-a",
            "experiments": [
                {
                    "name": "exp_a",
                    "share": 0.3,
                    "arms": [
                        {"name": "control", "weight": 1, "overrides": {}},
                        {"name": "treat", "weight": 3, "overrides": {"rules": {"pause_tip": 10}}},
                    ],
                },
                {
                    "name": "exp_b",
                    "share": 0.2,
                    "arms": [
                        {"name": "control", "weight": 1, "overrides": {}},
                        {"name": "treat", "weight": 1, "overrides": {}},
                    ],
                },
            ],
        },
        {
            "name": "content",
            "salt": "layer-b",
            "experiments": [
                {
                    "name": "exp_c",
                    "share": 0.5,
                    "arms": [
                        {"name": "x", "weight": 1, "overrides": {}},
                        {"name": "y", "weight": 1, "overrides": {}},
                    ],
                }
            ],
        },
    ]
    return ExperimentsConfig(holdout={"share": holdout, "salt": "holdout"}, layers=layers)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=10))
def test_bucket_is_deterministic_and_in_unit_interval(unit: str, salt: str) -> None:
    b = bucket(salt, unit)
    assert 0.0 <= b < 1.0
    bucket.cache_clear()
    assert bucket(salt, unit) == b


def test_assignment_is_sticky_across_processes_and_instances() -> None:
    config = cfg()
    first = [assign(u, config) for u in USERS[:2000]]
    bucket.cache_clear()
    again = Assigner(config)
    assert [again(u) for u in USERS[:2000]] == first
    # a known value pins the hash scheme: changing it would reshuffle every running experiment
    assert bucket("holdout", "user-0") == pytest.approx(
        int.from_bytes(__import__("hashlib").sha256(b"holdout:user-0").digest()[:8], "big") / 2**64
    )


def test_split_proportions() -> None:
    config = cfg()
    out = [assign(u, config) for u in USERS]
    n = len(out)
    holdout = sum(a.holdout for a in out) / n
    assert abs(holdout - 0.05) < 0.006  # 4 sigma of a binomial at n = 20000
    active = [a for a in out if not a.holdout]
    per_exp = Counter(e for a in active for e, _ in a.arms)
    m = len(active)
    assert abs(per_exp["exp_a"] / m - 0.3) < 0.015
    assert abs(per_exp["exp_b"] / m - 0.2) < 0.015
    assert abs(per_exp["exp_c"] / m - 0.5) < 0.015
    arms_a = Counter(arm for a in active for e, arm in a.arms if e == "exp_a")
    assert abs(arms_a["treat"] / per_exp["exp_a"] - 0.75) < 0.03  # weights 1:3


def test_layers_exclusive_inside_independent_across() -> None:
    config = cfg()
    out = [assign(u, config) for u in USERS]
    for a in out:
        names = [e for e, _ in a.arms]
        assert not ({"exp_a", "exp_b"} <= set(names))  # mutually exclusive in one layer
    active = [a for a in out if not a.holdout]
    in_a = [any(e == "exp_a" for e, _ in a.arms) for a in active]
    in_c = [any(e == "exp_c" for e, _ in a.arms) for a in active]
    both = sum(x and y for x, y in zip(in_a, in_c, strict=True)) / len(active)
    assert abs(both - 0.3 * 0.5) < 0.015  # independent layers overlap as a product


def test_holdout_users_are_in_no_experiment_and_labelled() -> None:
    config = cfg(holdout=0.2)
    held = [assign(u, config) for u in USERS[:3000]]
    held = [a for a in held if a.holdout]
    assert held and all(a.arms == () and a.overrides == () for a in held)
    assert {a.label for a in held} == {HOLDOUT_ARM}


def test_arm_overrides_and_labels() -> None:
    config = cfg()
    treated = next(a for a in (assign(u, config) for u in USERS) if ("exp_a", "treat") in a.arms)
    assert treated.overrides[0][0] == "exp_a.treat"
    assert treated.overrides[0][1].rules == {"pause_tip": 10}
    assert "exp_a=treat" in treated.label
    nobody = assign("someone", ExperimentsConfig(holdout={"share": 0, "salt": "h"}, layers=[]))
    assert nobody.label is None and not nobody.holdout


def test_new_salt_reshuffles() -> None:
    a = cfg()
    b = ExperimentsConfig(holdout={"share": 0.05, "salt": "holdout-v2"}, layers=a.layers)
    ha = {u for u in USERS if assign(u, a).holdout}
    hb = {u for u in USERS if assign(u, b).holdout}
    assert len(ha & hb) < 0.2 * len(ha)  # independent draws overlap ~5 %


def test_config_rejects_overfull_layers_and_duplicate_salts() -> None:
    raw = cfg().model_dump()
    raw["layers"][0]["experiments"][0]["share"] = 0.9
    with pytest.raises(ValueError, match=r"sum to 1\.1"):
        ExperimentsConfig.model_validate(raw)
    raw = cfg().model_dump()
    raw["layers"][1]["salt"] = "layer-a"
    with pytest.raises(ValueError, match="duplicate salts"):
        ExperimentsConfig.model_validate(raw)
