"""`intent policy tune` on a synthetic log whose best assist threshold is known."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from core.bandit import BanditConfig, Context
from core.policy_config import PolicyConfig, PolicyOverlay
from core.settings import ConfigError, load_config
from serving.experiments import assign
from serving.policy import Policy, arm_cohort_overrides, band_of, matching_cohorts
from serving.rules import score_signals
from training.policy.data import BanditLog
from training.policy.ope import fit_reward_model
from training.policy.tune import check_overlay, overlay, overlay_yaml, tune, write_overlay

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEP_AT = 0.6  # help raises completion only from this score on; below it, it hurts


def threshold_log(users: int = 500, per_user: int = 10, seed: int = 1) -> BanditLog:
    rng = np.random.default_rng(seed)
    rows, contexts = [], []
    for u in range(users):
        for k in range(per_user):
            score = float(rng.uniform(0.4, 0.9))
            action = "contextual_tip" if rng.random() < 0.5 else "none"
            lift = 0.3 if score >= STEP_AT else -0.1
            p = 0.5 + (lift if action != "none" else 0.0)
            completed = float(rng.random() < p)
            shown = float(action != "none")
            rows.append(
                {
                    "decision_id": f"d{u}-{k}",
                    "user_id": f"u{u}",
                    "ts": pd.Timestamp("2025-03-01", tz="UTC"),
                    "step": "identity_verification",
                    "moment": "pause",
                    "score": score,
                    "band": "mild",
                    "device": "mobile",
                    "returning": False,
                    "source": "model",
                    "holdout": False,
                    "chosen": action,
                    "propensity": 0.5,
                    "eligible": ("none", "contextual_tip"),
                    "table_action": "contextual_tip" if score >= 0.5 else "none",
                    "escalated": False,
                    "model_scored": True,
                    "completed": completed,
                    "shown": shown,
                    "reward": completed - 0.05 * shown,
                }
            )
            tenth = f"{int(score * 10)}"
            contexts.append(Context((("moment", "pause"), ("tenth", tenth)), (("score", score),)))
    return BanditLog(pd.DataFrame(rows), contexts, 0)


def test_the_tuned_threshold_finds_where_help_starts_to_pay() -> None:
    cfg = load_config(BanditConfig, REPO_CONFIGS / "bandit.yaml")
    policy = load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")
    log = threshold_log()
    model = fit_reward_model(log, 0.05)
    [choice] = tune(log, model, policy, cfg, [0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8], 1.0, 100)
    assert choice.threshold == pytest.approx(STEP_AT, abs=0.051)
    assert choice.tuned["completed"] > choice.current["completed"]
    assert choice.tuned["shown"] <= choice.current["shown"]
    found = overlay([choice], {"log": "synthetic"})
    check_overlay(policy, found)
    [cohort] = yaml.safe_load(overlay_yaml(found))["cohorts"]
    assert cohort["device"] == "mobile" and cohort["returning"] is False
    assert cohort["overrides"]["bands"]["uncertain"] == choice.threshold
    assert f"assist from {choice.threshold:g}" in cohort["note"]


# --- the overlay included by policy.yaml and by an experiment arm ---------------------------

# a rules-path request whose heuristic score is 0.523 (0.21 scroll + 0.233 pause + 0.08 clicks):
# `mild` under the shipped mobile threshold (0.45), `uncertain` once assisting starts at 0.6
SIGNALS = {"pause_s": 14.0, "scroll_depth": 30.0, "cta_fails": 0.0, "secondary_clicks": 2.0}


def tuned_overlay(folder: Path) -> Path:
    """`tune` on the synthetic log, its overlay written next to a copy of the configs."""
    policy = load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")
    cfg = load_config(BanditConfig, REPO_CONFIGS / "bandit.yaml")
    log = threshold_log(users=300)
    choices = tune(log, fit_reward_model(log, 0.05), policy, cfg, [0.5, 0.6, 0.7], 1.0, 100)
    found = overlay(choices, {"log": "synthetic", "data window": "2025-03-01"})
    return write_overlay(overlay_yaml(found), folder / "overlays" / "tuned.yaml")


def configs_with(folder: Path, edit) -> Path:
    """A copy of the repo's configs whose policy.yaml is `edit(raw)`."""
    shutil.copytree(REPO_CONFIGS, folder, dirs_exist_ok=True)
    raw = yaml.safe_load((folder / "policy.yaml").read_text())
    edit(raw)
    (folder / "policy.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def band_for(policy: PolicyConfig, device: str, returning: bool, arm=()) -> str:
    cohorts = matching_cohorts(policy.cohorts, device, None, returning)
    th = Policy(policy).thresholds(cohorts, arm)
    score = score_signals(SIGNALS, policy.heuristic)
    return band_of(score, th.bands).name


def test_an_included_overlay_changes_the_tuned_cohort_only(tmp_path: Path) -> None:
    written = tuned_overlay(tmp_path)
    configs_with(tmp_path, lambda raw: raw.update(include=["overlays/tuned.yaml"]))
    shipped = load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")
    policy = load_config(PolicyConfig, tmp_path / "policy.yaml")
    [inc] = policy.included
    assert inc.path == "overlays/tuned.yaml" and inc.cohorts == ["tuned_mobile_new"]
    assert inc.provenance["log"] == "synthetic"  # provenance kept in the loaded policy
    assert [c.name for c in policy.cohorts] == ["mobile", "returning", "tuned_mobile_new"]
    assert band_for(shipped, "mobile", False) == "mild"
    assert band_for(policy, "mobile", False) == "uncertain"
    for device, returning in [("mobile", True), ("desktop", False)]:  # other cohorts as before
        assert band_for(policy, device, returning) == band_for(shipped, device, returning)
    # tuning again while the overlay is included: the new cohorts replace the included ones
    again = PolicyOverlay.model_validate(yaml.safe_load(written.read_text()))
    check_overlay(policy, again)
    with pytest.raises(ConfigError, match="duplicate cohort names: tuned_mobile_new"):
        check_overlay(shipped.model_copy(update={"cohorts": policy.cohorts}), again)


def test_an_experiment_arm_applies_the_overlay_to_its_users_only(tmp_path: Path) -> None:
    tuned_overlay(tmp_path)

    def arm(raw: dict) -> None:
        [layer] = raw["experiments"]["layers"]
        layer["experiments"].append(
            {
                "name": "tuned_thresholds",
                "share": 0.5,
                "arms": [
                    {"name": "control", "weight": 1, "overrides": {}},
                    {
                        "name": "tuned",
                        "weight": 1,
                        "overrides": {},
                        "include": "overlays/tuned.yaml",
                    },
                ],
            }
        )

    policy = load_config(PolicyConfig, configs_with(tmp_path, arm) / "policy.yaml")
    [inc] = policy.included
    assert inc.into == "experiments.tuned_thresholds.tuned"
    assert [c.name for c in policy.cohorts] == ["mobile", "returning"]  # not global
    in_arm = {}
    for i in range(400):
        a = assign(f"user-{i}", policy.experiments)
        label = dict(a.arms).get("tuned_thresholds")
        if label and label not in in_arm:
            in_arm[label] = a
    tuned, control = in_arm["tuned"], in_arm["control"]
    for a, want in [(tuned, "uncertain"), (control, "mild")]:
        over = [*a.overrides, *arm_cohort_overrides(a.cohorts, "mobile", None, False)]
        assert band_for(policy, "mobile", False, over) == want
    over = [*tuned.overrides, *arm_cohort_overrides(tuned.cohorts, "desktop", None, False)]
    assert band_for(policy, "desktop", False, over) == "mild"


def test_a_missing_or_invalid_include_names_the_file(tmp_path: Path) -> None:
    configs_with(tmp_path, lambda raw: raw.update(include=["overlays/nope.yaml"]))
    with pytest.raises(ConfigError, match=r"include overlays/nope.yaml: .*nope.yaml not found"):
        load_config(PolicyConfig, tmp_path / "policy.yaml")
    bad = tmp_path / "overlays" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("cohorts:\n  - {name: x, device: mobile, overides: {}}\n")
    configs_with(tmp_path, lambda raw: raw.update(include=["overlays/bad.yaml"]))
    with pytest.raises(ConfigError, match=r"bad.yaml: cohorts.0.overides: unknown key"):
        load_config(PolicyConfig, tmp_path / "policy.yaml")
    bad.write_text("cohorts:\n  - {name: x, device: mobile, overrides: {bands: {nope: 0.5}}}\n")
    with pytest.raises(ConfigError, match=r"cohorts.x: unknown bands nope"):
        load_config(PolicyConfig, tmp_path / "policy.yaml")
    raw = yaml.safe_load((tmp_path / "policy.yaml").read_text())
    with pytest.raises(ValidationError, match="read by load_config"):
        PolicyConfig.model_validate(raw)  # a mapping cannot include files


def test_the_server_serves_the_included_thresholds(tmp_path: Path, monkeypatch) -> None:
    """The bare app (the same app BentoML mounts) started on configs that include the
    overlay answers the tuned cohort with the tuned band, other users as before."""
    from starlette.testclient import TestClient

    from serving.app_bare import create_app

    configs = tmp_path / "configs"
    tuned_overlay(configs)
    configs_with(configs, lambda raw: raw.update(include=["overlays/tuned.yaml"]))
    serving = yaml.safe_load((configs / "serving.yaml").read_text())
    serving["features"]["online_store"] = "none"
    serving["model"]["reload_interval_s"] = 0
    (configs / "serving.yaml").write_text(yaml.safe_dump(serving, sort_keys=False))
    monkeypatch.setenv("INTENT_HOME", str(tmp_path))
    monkeypatch.setenv("INTENT_CONFIGS", str(configs))
    for name in ("INTENT_DATA_DIR", "INTENT_MODELS_DIR", "INTENT_MLRUNS_DIR", "INTENT_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    body = {"step": "identity_verification", "moment": "pause", "signals": SIGNALS}
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        bands = {}
        for device, returning in [("mobile", False), ("desktop", False)]:
            r = client.post(
                "/score",
                json={
                    **body,
                    "user_id": f"u-{device}-{returning}",
                    "session_id": f"s-{device}-{returning}",
                    "device": device,
                    "returning": returning,
                },
            )
            assert r.status_code == 200, r.text
            bands[device, returning] = r.json()["band"]
    assert bands == {("mobile", False): "uncertain", ("desktop", False): "mild"}
