"""Seeds -> estimates, the case-study table and the notes, on made-up runs."""

from __future__ import annotations

import math

import pytest
from loop_helpers import REPO_CONFIGS

from core.policy_config import PolicyConfig
from core.settings import load_config
from features.config import FunnelConfig, SignalsConfig
from loop.config import PolicySpec
from loop.evaluate import RunResult
from loop.metrics import metric_names
from loop.summary import case_study, evaluation_notes, paired, summarize

FUNNEL = load_config(FunnelConfig, REPO_CONFIGS / "funnel.yaml")
SPECS = [
    PolicySpec(name="none", kind="none"),
    PolicySpec(name="rules", kind="rules", caps=True),
    PolicySpec(name="model", kind="model", caps=True, cold_start="unknown_user"),
]


def _run(policy: str, seed: int, completion: float, triggers: float) -> RunResult:
    metrics = {name: 0.0 for name in metric_names(FUNNEL)}
    metrics.update(
        completion_rate=completion,
        triggers_per_user_day=triggers,
        model_share=0.2 if policy == "model" else math.nan,
    )
    metrics["dropoff.identity_verification"] = 1 - completion
    return RunResult(policy, seed, metrics, 1.0, 0, None)


RUNS = [
    _run("none", 1, 0.40, 0.0),
    _run("none", 2, 0.42, 0.0),
    _run("none", 3, 0.41, 0.0),
    _run("rules", 1, 0.52, 1.0),
    _run("rules", 2, 0.55, 1.1),
    _run("rules", 3, 0.52, 0.9),
    _run("model", 1, 0.54, 0.8),
    _run("model", 2, 0.56, 0.9),
    _run("model", 3, 0.55, 0.7),
]


def test_means_and_paired_differences() -> None:
    s = summarize(RUNS, ["none", "rules", "model"], "none", 0.95)
    assert list(s) == ["none", "rules", "model"]
    assert s["rules"].metrics["completion_rate"].value == pytest.approx((0.52 + 0.55 + 0.52) / 3)
    diff = s["rules"].diff["completion_rate"]
    assert diff.value == pytest.approx((0.12 + 0.13 + 0.11) / 3)
    # paired: per-seed differences vary by 0.01 only, far less than the seeds themselves
    assert (
        diff.hi - diff.lo
        < s["rules"].metrics["completion_rate"].hi - s["rules"].metrics["completion_rate"].lo
    )
    rel = s["rules"].relative["completion_rate"]
    assert rel.value == pytest.approx((0.52 / 0.40 + 0.55 / 0.42 + 0.52 / 0.41) / 3 - 1)
    assert math.isnan(s["rules"].relative["triggers_per_user_day"].value)  # baseline is 0
    vs = paired(RUNS, "model", "rules", "completion_rate", 0.95)
    assert vs.value == pytest.approx((0.02 + 0.01 + 0.03) / 3)
    with pytest.raises(ValueError, match="baseline"):
        summarize(RUNS, ["rules"], "absent", 0.95)


def test_case_study_has_the_documents_shape() -> None:
    s = summarize(RUNS, ["none", "rules", "model"], "none", 0.95)
    rows = case_study(s, "none", "model", "identity_verification")
    assert [r.metric for r in rows][:2] == [
        "Completion rate",
        "Drop-off at identity verification",
    ]
    first = rows[0]
    assert first.before.startswith("41.0%") and first.after.startswith("55.0%")
    assert first.improvement.startswith("+34%")  # 0.55 / 0.41 - 1 on average over seeds


def test_notes_explain_missing_escalations_and_cold_start() -> None:
    s = summarize(RUNS, ["none", "rules", "model"], "none", 0.95)
    policy = load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")
    signals = load_config(SignalsConfig, REPO_CONFIGS / "signals.yaml")
    # a strict `> 30` can never hold at the dispatcher's 30 s checkpoint: the note says so
    strict = [r.model_copy(update={"op": ">", "threshold": 30.0}) for r in policy.escalation]
    notes = evaluation_notes(s, SPECS, policy.model_copy(update={"escalation": strict}), signals)
    assert any("pause_live_chat" in n and "no checkpoint" in n for n in notes)
    assert any(n.startswith("model: the model scored 20%") for n in notes)
    # the shipped rule (>= 30) holds at the checkpoint: the missing escalations have no excuse
    notes = evaluation_notes(s, SPECS, policy, signals)
    assert "no policy escalated to live chat" in notes
