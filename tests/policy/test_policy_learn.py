"""The VW CB-ADF learner: it finds the best action of a known log, survives a save / load
round trip with its checksum, and refuses a tampered model file."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_helpers import ACTIONS, best_action, synthetic_log

from core.bandit import (
    MODEL_FILE,
    BanditConfig,
    LearnedPolicy,
    PolicyArtefactError,
    resolve_artefact,
)
from training.policy.learn import learned_choices, manifest_for, train_vw, write_artefact

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def cfg() -> BanditConfig:
    from core.settings import load_config

    return load_config(BanditConfig, REPO_CONFIGS / "bandit.yaml")


@pytest.fixture(scope="module")
def log():
    return synthetic_log(users=200, per_user=10)


@pytest.fixture(scope="module")
def artefact(tmp_path_factory, cfg, log) -> Path:
    ws = train_vw(log, cfg)
    folder = write_artefact(ws, tmp_path_factory.mktemp("models"), manifest_for(log, cfg, 2000))
    ws.finish()
    return folder


def test_the_learned_policy_picks_each_moments_best_action(artefact, cfg, log) -> None:
    policy = LearnedPolicy(artefact)
    try:
        chosen = learned_choices(policy, log, cfg)
    finally:
        policy.close()
    for moment, action in zip(log.frame["moment"], chosen, strict=True):
        assert action == best_action(moment)


def test_round_trip_predicts_what_the_trained_workspace_predicted(cfg, log, tmp_path) -> None:
    from core.bandit import vw_example

    ws = train_vw(log, cfg)
    before = [c for x in log.contexts[:50] for c in ws.predict(vw_example(x, list(ACTIONS)))]
    folder = write_artefact(ws, tmp_path, manifest_for(log, cfg, 2000), version="v1")
    ws.finish()
    assert resolve_artefact(tmp_path, "latest") == folder
    loaded = LearnedPolicy(folder)
    after = [c for x in log.contexts[:50] for c in loaded.costs(x, list(ACTIONS))]
    loaded.close()
    assert after == pytest.approx(before, abs=1e-6)
    assert loaded.manifest["data_window"]["start"] == str(log.frame["ts"].min())


def test_a_changed_model_file_is_refused(artefact, tmp_path) -> None:
    import shutil

    copy = tmp_path / "policy" / "tampered"
    shutil.copytree(artefact, copy)
    with open(copy / MODEL_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(PolicyArtefactError, match="checksum"):
        LearnedPolicy(copy)


def test_no_artefact_says_how_to_get_one(tmp_path) -> None:
    with pytest.raises(PolicyArtefactError, match="intent policy learn"):
        resolve_artefact(tmp_path, "latest")
