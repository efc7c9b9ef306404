"""`intent data profile`: counts, candidate labels, the recommendation and the limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
import pytest
import typer
from pipeline_factory import REPO_CONFIGS, no_bots, session, table
from typer.testing import CliRunner

from core.layout import Layout
from core.settings import load_config
from features.config import LabelKind
from features.ingest.event_store import ingest
from features.pipeline import profile_cli
from features.pipeline.profile import LabelCandidate, profile_events, recommend
from features.pipeline.profile_config import ProfileConfig
from features.pipeline.profile_report import markdown

DAY0 = datetime(2025, 6, 2, 8, tzinfo=UTC)
FAIL = ("cta_fail", "profile", "cta")


@pytest.fixture(scope="module")
def profile_cfg() -> ProfileConfig:
    cfg = load_config(ProfileConfig, layout=Layout.under(REPO_CONFIGS.parent))
    return cfg.model_copy(update={"label": cfg.label.model_copy(update={"min_labelled": 1})})


def one_day():
    """Five sessions of four users on one morning; c1 leaves 40 min before the data ends."""
    at = lambda minutes: DAY0 + timedelta(minutes=minutes)  # noqa: E731
    struggle = [(0, "view", "profile"), (1, *FAIL), (2, *FAIL), (3, *FAIL)]
    return table(
        session("a1", [*struggle, (60, "step_complete", "profile")], user_id="a", base=at(0)),
        session("a2", [(0, "view", "welcome"), (5, "exit")], user_id="a", base=at(120)),
        session("b1", [*struggle, (9, "exit", "profile")], user_id="b", base=at(30)),
        session("c1", [*struggle, (9, "exit", "profile")], user_id="c", base=at(150)),
        session(
            "d1",
            [(0, "view", "welcome"), (1, "click", "welcome", "cta")],
            user_id="d",
            base=at(190),
        ),
    )


def test_counts_come_from_the_events(configs, profile_cfg) -> None:
    events = one_day()
    p = profile_events(events, no_bots(events), configs, profile_cfg)
    assert (p.events, p.sessions, p.users, p.days) == (events.num_rows, 5, 4, 1)
    assert p.returning_user_share == pytest.approx(1 / 4)  # only a came back
    types = dict(zip(p.event_types["type"], p.event_types["events"], strict=True))
    assert types["cta_fail"] == 9 and types["step_complete"] == 1 and types["scroll"] == 0
    steps = p.steps.set_index("step")
    assert steps.loc["profile", "sessions"] == 3 and steps.loc["profile", "completions"] == 1
    assert steps.loc["funding", "events"] == 0
    assert (
        dict(zip(p.moments["moment"], p.moments["decision_points"], strict=True))["cta_fail"] == 3
    )


def test_longer_horizons_censor_more_and_session_end_needs_no_horizon(configs, profile_cfg) -> None:
    events = one_day()
    p = profile_events(events, no_bots(events), configs, profile_cfg)
    horizons = [c for c in p.labels if c.kind == LabelKind.HORIZON]
    assert [c.horizon_minutes for c in horizons] == profile_cfg.horizons_minutes
    censored = [c.censored for c in horizons]
    assert censored == sorted(censored)  # a longer wait never knows more
    by_name = {c.name: c for c in p.labels}
    # c1 struggles 40 min before the data ends and leaves: known under 30 min, not under 60
    assert by_name["horizon 60 min"].censored > by_name["horizon 30 min"].censored
    assert by_name["session_end"].censored < by_name["horizon 60 min"].censored
    assert len({c.detected for c in p.labels}) == 1  # the same decision points for all


def test_one_day_says_what_it_cannot_support(configs, profile_cfg) -> None:
    events = one_day()
    p = profile_events(events, no_bots(events), configs, profile_cfg)
    text = "\n".join(p.cannot_support)
    assert "one day: step statistics need a prior day" in text
    assert "no goal events" in text and "shallow_scroll" in text
    assert "funding" in text and "first_transaction" in text  # funnel steps never seen
    md = markdown(p)
    assert "## Labels" in md and "session_end" in md and "**Recommendation:**" in md


def candidate(kind, minutes, detected, censored, positives, problems=()) -> LabelCandidate:
    return LabelCandidate(kind, minutes, detected, censored, positives, tuple(problems))


def test_recommend_keeps_a_usable_configured_label() -> None:
    h30 = candidate(LabelKind.HORIZON, 30, 1_000, 10, 450)
    end = candidate(LabelKind.SESSION_END, None, 1_000, 0, 700)
    best, why = recommend([h30, end], "horizon 30 min")
    assert best is h30 and why.startswith("keep horizon 30 min") and "45.5% positive" in why


def test_recommend_replaces_an_unusable_label_with_the_least_censored() -> None:
    h30 = candidate(LabelKind.HORIZON, 30, 1_000, 850, 0, ["censors 85% (> 30%)"])
    h60 = candidate(LabelKind.HORIZON, 60, 1_000, 200, 500)
    end = candidate(LabelKind.SESSION_END, None, 1_000, 20, 900)
    best, why = recommend([h30, h60, end], "horizon 30 min")
    assert best is end and "label_kind: session_end" in why and "instead of horizon 30" in why
    none, why = recommend([h30], "horizon 30 min")
    assert none is None and "no label kind meets" in why


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    profile_cli.register(app)
    return app


def test_profile_command_prints_markdown_and_writes_html_and_png(
    tmp_path, monkeypatch, configs
) -> None:
    layout = Layout.under(tmp_path, configs=REPO_CONFIGS).ensure()
    events = one_day()
    ingest(layout, events, configs.events, pc.max(events["ts"]).as_py() + timedelta(hours=1))
    monkeypatch.setenv("INTENT_DATA_DIR", str(layout.data))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    app = _app()
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["data", "profile", "--workers", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Data profile")
    assert f"| events | {events.num_rows} |" in result.stdout
    assert (out / "report.html").read_text().count("<table") >= 4
    assert (out / "profile.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_command_without_events_fails_in_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INTENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    app = _app()
    result = CliRunner().invoke(app, ["data", "profile"])
    assert result.exit_code == 1 and "intent validate" in result.output


def test_profile_config_is_strict(tmp_path) -> None:
    from core.settings import ConfigError, parse_config

    raw = load_config(ProfileConfig, layout=Layout.under(REPO_CONFIGS.parent)).model_dump()
    with pytest.raises(ConfigError, match="max_positive_rate"):
        raw["label"]["min_positive_rate"] = 0.99
        parse_config(ProfileConfig, raw, source="profile.yaml")
    raw["label"]["min_positive_rate"] = 0.02
    raw["horizon_minutes"] = [30]
    with pytest.raises(ConfigError, match="horizon_minutes"):
        parse_config(ProfileConfig, raw, source="profile.yaml")
