"""simulator.yaml: the shipped file validates; mistakes are errors naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from sim_helpers import REPO_CONFIGS, Configs

from core.settings import ConfigError, parse_config
from features.config import FunnelConfig
from features.simulator.config import SimulatorConfig, check_compatible


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO_CONFIGS / SimulatorConfig.file_name).read_text())


def _parse(raw: dict) -> SimulatorConfig:
    return parse_config(SimulatorConfig, raw, source="simulator.yaml")


def test_shipped_config_is_compatible_with_the_other_configs(cfgs: Configs) -> None:
    check_compatible(cfgs.sim, cfgs.funnel, cfgs.signals)
    assert set(cfgs.sim.steps) == set(cfgs.funnel.steps)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("population", "archetypes", "confident", "share"),
            0.9,
            "archetype shares must add up to 1",
        ),
        (("population", "time_zones"), {"Mars/Olympus": 1.0}, "unknown IANA time zone"),
        (("steps", "profile", "device_stuck"), {"fridge": 0.3}, "unknown devices fridge"),
        (("steps", "profile", "stuck_kinds"), {"form": 0.5, "none": 0.5}, "stuck kinds"),
        (("calibration", "completion_rate"), 0.6, "implies a completion rate"),
        (("response", "effect", "form"), {"tooltip": 0.5}, "missing actions"),
        (("behaviour", "cta_fails"), {"min": 4, "max": 2}, "max must be >= min"),
        (("population", "bogus"), 1, "unknown key"),
    ],
)
def test_bad_values_name_the_problem(raw: dict, path: tuple, value, message: str) -> None:
    bad = copy.deepcopy(raw)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        _parse(bad)
    assert message in str(err.value)
    assert "simulator.yaml" in str(err.value)


def test_funnel_and_signals_mismatches_are_named(cfgs: Configs) -> None:
    funnel = FunnelConfig(name="f", steps=[*cfgs.funnel.steps, "tax_form"])
    with pytest.raises(ConfigError, match="no parameters for funnel steps tax_form"):
        check_compatible(cfgs.sim, funnel, cfgs.signals)
    signals = cfgs.signals.model_copy(update={"primary_targets": ["submit"]})
    with pytest.raises(ConfigError, match="cta_target"):
        check_compatible(cfgs.sim, cfgs.funnel, signals)
