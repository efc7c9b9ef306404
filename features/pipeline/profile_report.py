"""Render a `features.pipeline.profile.Profile`: Markdown (stdout), HTML and a PNG (data/reports/).

Functions take the profile and return text or write one file; nothing here computes a
figure, so the report can never disagree with the profile.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from features.pipeline.profile import LabelCandidate, Profile

PNG_NAME = "profile.png"


def label_table(profile: Profile) -> pd.DataFrame:
    """One row per candidate label: the numbers the recommendation is made from."""
    return pd.DataFrame(
        [
            {
                "label": c.name + (" (configured)" if c.name == profile.configured else ""),
                "decision points": f"{c.detected:,}",
                "censored": f"{c.censored_share:.1%}",
                "labelled": f"{c.labelled:,}",
                "positive rate": _pct(c.positive_rate),
                "usable": "yes" if c.usable else "no: " + "; ".join(c.problems),
            }
            for c in profile.labels
        ]
    )


def overview(profile: Profile) -> list[tuple[str, str]]:
    eps = profile.events_per_session
    return [
        (
            "span",
            f"{profile.first_event:%Y-%m-%d %H:%M} .. {profile.last_event:%Y-%m-%d %H:%M} UTC "
            f"({profile.days} day{'s' if profile.days != 1 else ''} with events)",
        ),
        ("events", f"{profile.events:,}"),
        ("sessions", f"{profile.sessions:,} ({profile.bot_sessions:,} flagged as bots)"),
        ("users", f"{profile.users:,}"),
        (
            "events per session",
            f"mean {eps['mean']:.1f}, median {eps['median']:.0f}, p90 {eps['p90']:.0f}",
        ),
        ("users with 2+ sessions", f"{profile.returning_user_share:.1%}"),
        ("decision points", f"{int(profile.moments['decision_points'].sum()):,}"),
    ]


def _pct(value: float) -> str:
    return "-" if value != value else f"{value:.1%}"  # NaN: nothing labelled


def _md_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _types(profile: Profile) -> pd.DataFrame:
    t = profile.event_types[profile.event_types["events"] > 0].copy()
    t["share"] = t["share"].map(lambda v: f"{v:.1%}")
    t["events"] = t["events"].map(lambda v: f"{v:,}")
    t["sessions"] = t["sessions"].map(lambda v: f"{v:,}")
    absent = profile.event_types[profile.event_types["events"] == 0]["type"].tolist()
    if absent:
        t.loc[len(t)] = ["absent: " + ", ".join(absent), "0", "0", "-"]
    return t[["type", "events", "sessions", "share"]]


def _steps(profile: Profile) -> pd.DataFrame:
    s = profile.steps.copy()
    s["in_funnel"] = s["in_funnel"].map({True: "yes", False: "no (quarantined by validate)"})
    s["share"] = s["share"].map(lambda v: f"{v:.1%}")
    for column in ("events", "sessions", "completions"):
        s[column] = s[column].map(lambda v: f"{v:,}")
    return s[["step", "in_funnel", "events", "sessions", "completions", "share"]]


def _moments(profile: Profile) -> pd.DataFrame:
    m = profile.moments.copy()
    m["decision_points"] = m["decision_points"].map(lambda v: f"{v:,}")
    return m


def markdown(profile: Profile) -> str:
    """The whole profile as Markdown (what `intent data profile` prints)."""
    best: LabelCandidate | None = profile.recommended
    parts = [
        "# Data profile",
        "",
        _md_table(pd.DataFrame(overview(profile), columns=["what", "value"])),
        "",
        "## Event types",
        "",
        _md_table(_types(profile)),
        "",
        "## Funnel steps (configs/funnel.yaml)",
        "",
        _md_table(_steps(profile)),
        "",
        "## Decision points per moment",
        "",
        _md_table(_moments(profile)) if len(profile.moments) else "none detected",
        "",
        "## Labels",
        "",
        _md_table(label_table(profile)),
        "",
        f"**Recommendation:** {profile.recommendation}"
        + (f" (recommended: `{best.name}`)" if best is not None else ""),
        "",
        "## What this data cannot support",
        "",
    ]
    parts += [f"- {line}" for line in profile.cannot_support] or ["- nothing found"]
    return "\n".join(parts) + "\n"


def write_png(profile: Profile, path: Path) -> Path:
    """Censored share and positive rate per candidate label, and decision points per moment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in profile.labels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    x = range(len(names))
    left.bar(
        [i - 0.2 for i in x], [c.censored_share for c in profile.labels], 0.4, label="censored"
    )
    left.bar([i + 0.2 for i in x], [c.positive_rate for c in profile.labels], 0.4, label="positive")
    left.set_xticks(list(x), names, rotation=30, ha="right")
    left.set_ylim(0, 1.2)
    left.set_ylabel("share of decision points")
    left.set_title("Candidate labels")
    left.legend(loc="upper left", ncol=2)
    right.barh(profile.moments["moment"], profile.moments["decision_points"])
    right.invert_yaxis()
    right.set_xlabel("decision points")
    right.set_title("Micro-moments detected")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def html_page(profile: Profile, png_name: str = PNG_NAME) -> str:
    """A self-contained page (the PNG beside it) with the same tables as the Markdown."""

    def table(frame: pd.DataFrame) -> str:
        return frame.to_html(index=False, border=0, escape=True)

    limits = "".join(f"<li>{html.escape(line)}</li>" for line in profile.cannot_support)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Data profile</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}}</style></head><body>
<h1>Data profile</h1>
{table(pd.DataFrame(overview(profile), columns=["what", "value"]))}
<h2>Labels</h2>
{table(label_table(profile))}
<p><b>Recommendation:</b> {html.escape(profile.recommendation)}</p>
<img src="{html.escape(png_name)}" alt="censored share and positive rate per label">
<h2>What this data cannot support</h2>
<ul>{limits or "<li>nothing found</li>"}</ul>
<h2>Event types</h2>
{table(_types(profile))}
<h2>Funnel steps</h2>
{table(_steps(profile))}
<h2>Decision points per moment</h2>
{table(_moments(profile))}
</body></html>
"""


def write_report(profile: Profile, folder: Path) -> dict[str, Path]:
    """profile.md, report.html and profile.png into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": folder / "profile.md",
        "html": folder / "report.html",
        "png": folder / PNG_NAME,
    }
    paths["markdown"].write_text(markdown(profile))
    paths["html"].write_text(html_page(profile))
    write_png(profile, paths["png"])
    return paths
