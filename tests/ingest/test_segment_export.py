"""A Segment spec export through `--suggest-mapping` -> edited mapping -> import -> validate.

`tests/fixtures/segment/spec_export.jsonl` is what a web + iOS onboarding sends with its own
tracking plan (see the fixture README): track names the shipped mapping does not know
("CTA Click Failed", "Help Tooltip Hovered" with `duration_ms`), page names such as
"Identity Verification", a page outside the funnel, calls the product ignores. Every line
must end up imported, quarantined (with its line) or skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
import yaml
from ingest_factory import REPO
from typer.testing import CliRunner

from core.layout import Layout
from features.ingest import cli as ingest_cli
from features.ingest.event_store import read_events, read_quarantine
from features.ingest.importers.mapping import SegmentMapping, load_mapping

EXPORT = REPO / "tests" / "fixtures" / "segment" / "spec_export.jsonl"
LINES = EXPORT.read_text().splitlines()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch) -> tuple[typer.Typer, Layout]:
    monkeypatch.setenv("INTENT_DATA_DIR", str(tmp_path / "data"))
    app = typer.Typer()
    ingest_cli.register(app)
    return app, Layout.from_env()


def _count(output: str, label: str) -> int:
    match = re.search(rf"│ *{re.escape(label)}[^│\n]*│\s*([\d,]+)", output)
    assert match, f"{label!r} not in output:\n{output}"
    return int(match.group(1).replace(",", ""))


def _by_id() -> dict[str, dict]:
    return {json.loads(line)["messageId"]: json.loads(line) for line in LINES if line.strip()}


def test_the_shipped_mapping_refuses_a_foreign_tracking_plan(cli) -> None:
    app, layout = cli
    result = CliRunner().invoke(app, ["import", "segment", str(EXPORT)])
    assert result.exit_code == 1, result.output
    assert "top reasons: unknown_event_name 12" in result.output
    assert not (layout.raw / "segment").exists()
    quarantine = read_quarantine(layout)  # kept, with each record's line
    assert quarantine.num_rows == 15
    for row in quarantine.to_pylist():
        assert row["record"] == LINES[row["line"] - 1]


def test_suggest_edit_import_validate_accounts_for_every_line(cli, tmp_path) -> None:
    app, layout = cli
    runner = CliRunner()
    skeleton = tmp_path / "mine.yaml"
    result = runner.invoke(
        app, ["import", "segment", str(EXPORT), "--suggest-mapping", "--out", str(skeleton)]
    )
    assert result.exit_code == 0, result.output
    assert not layout.raw.exists()  # a suggestion imports nothing
    assert _count(result.output, "lines") == len(LINES)
    assert _count(result.output, "CTA Click Failed") == 2
    assert _count(result.output, "Identity Verification") == 2  # a page and a screen
    assert _count(result.output, "duration_ms") == 3

    again = runner.invoke(
        app, ["import", "segment", str(EXPORT), "--suggest-mapping", "--out", str(skeleton)]
    )
    assert again.exit_code == 1 and "exists (your edits?)" in again.output  # never overwritten

    suggested = load_mapping(skeleton, SegmentMapping)  # valid as written
    hover = suggested.track["Help Tooltip Hovered"]
    assert (hover.type, hover.value.path, hover.value.unit) == (
        "hover",
        "properties.duration_ms",
        "ms",
    )
    assert suggested.track["Page Scrolled"].value.unit == "fraction"  # depths within 0..1
    assert suggested.track["CTA Click Failed"].type == "cta_fail"
    assert suggested.track["Form Field Error"].target.path == "properties.field"
    assert "Coupon Applied" not in suggested.track  # no guess: left as a comment
    assert '# "Coupon Applied"' in skeleton.read_text()
    assert suggested.steps.exact["Identity Verification"] == "identity_verification"

    # the edit a user makes: drop a wrong guess, ignore what is not onboarding, map a path
    edited = yaml.safe_load(skeleton.read_text())
    del edited["track"]["Experiment Viewed"]
    edited["ignore_track"] = ["Experiment Viewed", "Coupon Applied"]
    edited["steps"]["regex"] = [{"pattern": "^/onboarding/kyc", "step": "identity_verification"}]
    mapping = tmp_path / "edited.yaml"
    mapping.write_text(yaml.safe_dump(edited, sort_keys=False))

    imported = runner.invoke(app, ["import", "segment", str(EXPORT), "--mapping", str(mapping)])
    assert imported.exit_code == 0, imported.output
    records = _count(imported.output, "records in")
    events = _count(imported.output, "events")
    quarantined = _count(imported.output, "quarantined")
    skipped = _count(imported.output, "skipped: blank line") + _count(
        imported.output, "skipped: ignored track event"
    )
    assert records == len(LINES) == events + quarantined + skipped
    assert (quarantined, skipped) == (5, 3)  # App Backgrounded, Pricing, group, alias, -200
    assert _count(imported.output, "unknown_step") == 1
    assert _count(imported.output, "negative_value") == 1  # duration_ms: -200

    validated = runner.invoke(app, ["validate"])
    assert validated.exit_code == 0, validated.output
    assert _count(validated.output, "rows in") == events
    assert _count(validated.output, "quarantined") == 0
    stored = {r["event_id"]: r for r in read_events(layout).to_pylist()}
    assert len(stored) == events

    quarantine = read_quarantine(layout).to_pylist()
    assert len(quarantine) == quarantined
    assert all(r["record"] == LINES[r["line"] - 1] for r in quarantine)
    assert {r["reason"] for r in quarantine} == {
        "unknown_event_name",
        "unknown_step",
        "unsupported_call",
        "negative_value",
    }

    source = _by_id()
    hovers = [r for r in stored.values() if r["type"] == "hover"]
    durations = {source[r["event_id"]]["properties"]["duration_ms"] / 1000 for r in hovers}
    assert {r["value"] for r in hovers} == durations == {4.2, 1.5}  # ms -> s
    assert {r["target"] for r in hovers} == {"help"}
    scroll = next(r for r in stored.values() if r["type"] == "scroll")
    assert scroll["value"] == 100 * source[scroll["event_id"]]["properties"]["scroll_depth"]
    assert scroll["step"] == "identity_verification"  # from context.page.path
    kyc = next(m for m, msg in source.items() if msg.get("event") == "Document Upload Completed")
    assert stored[kyc]["step"] == "identity_verification"  # the regex the user added
    pages = [r for r in stored.values() if r["type"] == "view"]
    assert {r["step"] for r in pages} == {"welcome", "profile", "identity_verification", "funding"}
    assert sum(r["type"] == "cta_fail" for r in stored.values()) == 2
    assert sum(r["type"] == "goal" for r in stored.values()) == 1
