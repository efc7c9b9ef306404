"""The dashboard page: server-rendered HTML with inline SVG charts (no script, no CDN - the
machine may be offline), reloading itself every `refresh_s`.

Input is `serving.dashboard.summarize`'s dict; every figure cell carries a `data-figure`
key (e.g. `moment/pause/decisions`) so a browser test can read it back from the DOM.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from serving.dashboard import DIMENSIONS

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:3px 9px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.note{color:#666;font-size:.9em}.warn{color:#b00}nav a{margin-right:1em}
nav a.on{font-weight:bold}.kpi{display:inline-block;margin-right:2.5em}
.kpi b{display:block;font-size:1.6em}svg{display:block;margin:.3em 0}
"""
_BAR = "#4a78b5"
_WARN = "#c0392b"


def _pct(e: Mapping[str, Any]) -> str:
    if e["value"] is None:
        return "-"
    return f"{e['value'] * 100:.1f} % [{e['lo'] * 100:.1f}, {e['hi'] * 100:.1f}]"


def _td(key: str, text: Any) -> str:
    return f'<td data-figure="{html.escape(key)}">{html.escape(str(text))}</td>'


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def interval_chart(rows: Sequence[Mapping[str, Any]], rate: str, title: str) -> str:
    """Horizontal bars of `rate` per segment with the interval as a whisker (0-100 %)."""
    rows = [r for r in rows if r[rate]["value"] is not None]
    if not rows:
        return ""
    left, width, row_h = 170, 360, 18
    height = row_h * len(rows) + 26
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="{left + width + 70}" '
        f'height="{height}" viewBox="0 0 {left + width + 70} {height}">',
        f'<text x="0" y="12" font-size="12" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, r in enumerate(rows):
        e, y = r[rate], 20 + i * row_h
        x = lambda v: left + v * width  # noqa: E731 - one-line scale
        parts += [
            f'<text x="{left - 6}" y="{y + 12}" font-size="11" text-anchor="end">'
            f"{html.escape(r['value'][:26])}</text>",
            f'<rect x="{left}" y="{y + 3}" width="{e["value"] * width:.1f}" height="11" '
            f'fill="{_BAR}" opacity=".75"/>',
            f'<line x1="{x(e["lo"]):.1f}" x2="{x(e["hi"]):.1f}" y1="{y + 8}" y2="{y + 8}" '
            'stroke="#222"/>',
            f'<text x="{left + width + 6}" y="{y + 12}" font-size="11">'
            f"{e['value'] * 100:.1f} %</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)


def timeline_chart(points: Sequence[Mapping[str, Any]]) -> str:
    """Decisions (light) and shown triggers (dark) per slice of the window."""
    top = max([p["decisions"] for p in points] + [1])
    width, height, bar = 720, 110, 720 / max(len(points), 1)
    parts = [
        f'<svg role="img" aria-label="decisions over time" width="{width}" '
        f'height="{height + 16}" viewBox="0 0 {width} {height + 16}">'
    ]
    for i, p in enumerate(points):
        h_all, h_shown = p["decisions"] / top * height, p["shown"] / top * height
        x = i * bar
        parts += [
            f'<rect x="{x + 1:.1f}" y="{height - h_all:.1f}" width="{bar - 2:.1f}" '
            f'height="{h_all:.1f}" fill="{_BAR}" opacity=".35"><title>{p["decisions"]} '
            f"decisions, {p['shown']} shown, from {_when(p['start'])}</title></rect>",
            f'<rect x="{x + 1:.1f}" y="{height - h_shown:.1f}" width="{bar - 2:.1f}" '
            f'height="{h_shown:.1f}" fill="{_BAR}"/>',
        ]
    if points:
        parts += [
            f'<text x="0" y="{height + 13}" font-size="10">{_when(points[0]["start"])}</text>',
            f'<text x="{width}" y="{height + 13}" font-size="10" text-anchor="end">now '
            f"(peak {top} decisions per slice)</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)


def psi_chart(features: Sequence[Mapping[str, Any]], threshold: float) -> str:
    """PSI per feature with the threshold as a red line."""
    if not features:
        return ""
    left, width, row_h = 170, 360, 16
    top = max([f["psi"] for f in features] + [threshold * 1.5])
    height = row_h * len(features) + 8
    tx = left + threshold / top * width
    parts = [
        f'<svg role="img" aria-label="PSI per feature" width="{left + width + 70}" '
        f'height="{height}" viewBox="0 0 {left + width + 70} {height}">'
    ]
    for i, f in enumerate(features):
        y = 4 + i * row_h
        colour = _WARN if f["over"] else _BAR
        parts += [
            f'<text x="{left - 6}" y="{y + 11}" font-size="11" text-anchor="end">'
            f"{html.escape(f['feature'][:26])}</text>",
            f'<rect x="{left}" y="{y + 2}" width="{f["psi"] / top * width:.1f}" height="10" '
            f'fill="{colour}"/>',
            f'<text x="{left + width + 6}" y="{y + 11}" font-size="11">{f["psi"]:.3f}</text>',
        ]
    parts.append(
        f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="0" y2="{height}" stroke="{_WARN}" '
        'stroke-dasharray="4 3"/></svg>'
    )
    return "".join(parts)


def _segment_table(dim: str, rows: Sequence[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th>value</th><th>decisions</th><th>shown</th><th>trigger rate</th>"
        "<th>accepted</th><th>acceptance</th><th>completed</th><th>completion</th></tr>"
    )
    body = []
    for r in rows:
        k = f"{dim}/{r['value']}"
        body.append(
            f"<tr><td>{html.escape(r['value'])}</td>"
            + _td(f"{k}/decisions", r["decisions"])
            + _td(f"{k}/shown", r["shown"])
            + _td(f"{k}/trigger_rate", _pct(r["trigger_rate"]))
            + _td(f"{k}/accepted", r["accepted"])
            + _td(f"{k}/acceptance", _pct(r["acceptance"]))
            + _td(f"{k}/completed", r["completed"])
            + _td(f"{k}/completion", _pct(r["completion"]))
            + "</tr>"
        )
    return f'<table id="table-{dim}">{head}{"".join(body)}</table>'


def _drift(d: Mapping[str, Any]) -> str:
    if d["status"] != "ok":
        return f'<p class="note" id="drift-status">{html.escape(d["detail"])}</p>'
    over = [f["feature"] for f in d["features"] if f["over"]]
    verdict = (
        f'<p class="warn" id="drift-status">PSI over {d["threshold"]} for: '
        f"{html.escape(', '.join(over))}</p>"
        if over and d["verdict"]
        else f'<p class="note" id="drift-status">No feature over PSI {d["threshold"]}'
        + ("" if d["verdict"] else " (too few rows for a verdict)")
        + "</p>"
    )
    return (
        f"<p>Model {html.escape(str(d['model_version']))}, last {d['rows']:,} model decisions "
        f"against the training profile; score PSI "
        f'<span data-figure="drift/score_psi">{d["score_psi"]:.3f}</span>.</p>'
        + verdict
        + psi_chart(d["features"], d["threshold"])
    )


def _shadow(s: Mapping[str, Any]) -> str:
    if s["status"] != "on":
        return f'<p class="note" id="shadow-status">{html.escape(s["detail"])}</p>'
    head = (
        "<tr><th>shadow version</th><th>pairs</th><th>agreement (|Δ| ≤ "
        f"{s['tolerance']})</th><th>mean |Δ|</th><th>Spearman</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(v['shadow_version'])}</td>"
        + _td(f"shadow/{v['shadow_version']}/pairs", v["pairs"])
        + _td(f"shadow/{v['shadow_version']}/agreement", _pct(v["agreement"]))
        + _td(f"shadow/{v['shadow_version']}/mean_abs_diff", f"{v['mean_abs_diff']:.4f}")
        + _td(
            f"shadow/{v['shadow_version']}/spearman",
            "-" if v["spearman"] is None else f"{v['spearman']:.3f}",
        )
        + "</tr>"
        for v in s["versions"]
    )
    return f'<p id="shadow-status">shadow on</p><table id="table-shadow">{head}{body}</table>'


def render(summary: Mapping[str, Any], windows: Sequence[str], refresh_s: int) -> str:
    """The whole page for one window (`windows`: the selectable window names)."""
    t, name = summary["totals"], summary["window"]
    nav = "".join(
        f'<a href="?window={html.escape(w)}"{" class=on" if w == name else ""}>'
        f"last {html.escape(w)}</a>"
        for w in windows
    )
    kpis = "".join(
        f'<span class="kpi">{label}<b data-figure="totals/{key}">{value}</b></span>'
        for label, key, value in (
            ("decisions", "decisions", f"{t['decisions']:,}"),
            ("trigger rate", "trigger_rate", _pct(t["trigger_rate"])),
            ("acceptance", "acceptance", _pct(t["acceptance"])),
            ("completion", "completion", _pct(t["completion"])),
        )
    )
    sources = ", ".join(f"{k}: {v:,}" for k, v in t["by_source"].items()) or "none"
    truncated = (
        '<p class="warn">Row limit reached: only the newest decisions of the window are '
        "counted (dashboard.max_rows).</p>"
        if summary["truncated"]
        else ""
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{int(refresh_s)}">',
        f"<title>Intent service - last {html.escape(name)}</title><style>{_CSS}</style>",
        "</head><body>",
        f"<h1>Trigger efficacy, last {html.escape(name)}</h1>",
        f"<nav>{nav}</nav>",
        f'<p class="note">{_when(summary["since"])} to {_when(summary["until"])}; '
        f"intervals: Wilson at {summary['confidence'] * 100:g} %; reloads every "
        f"{int(refresh_s)} s. Decisions by source: {html.escape(sources)}; held out: "
        f"{t['holdout']:,}.</p>",
        truncated,
        f'<section id="totals">{kpis}</section>',
        '<section id="timeline"><h2>Decisions over the window</h2>',
        timeline_chart(summary["timeline"]),
        "</section>",
    ]
    for dim, label in DIMENSIONS:
        rows = summary["segments"][dim]
        parts += [
            f'<section id="by-{dim}"><h2>By {html.escape(label)}</h2>',
            _segment_table(dim, rows),
            interval_chart(rows, "trigger_rate", "trigger rate"),
            interval_chart(rows, "acceptance", "acceptance"),
            interval_chart(rows, "completion", "completion"),
            "</section>",
        ]
    fallbacks = "".join(
        f"<tr><td>{html.escape(f['reason'])}</td>"
        + _td(f"fallback/{f['reason']}/decisions", f["decisions"])
        + _td(f"fallback/{f['reason']}/share", f"{f['share'] * 100:.1f} %")
        + "</tr>"
        for f in summary["fallbacks"]
    )
    parts += [
        '<section id="fallbacks"><h2>Rules fallbacks</h2>',
        (
            '<table id="table-fallbacks"><tr><th>reason</th><th>decisions</th>'
            f"<th>share of all</th></tr>{fallbacks}</table>"
            if fallbacks
            else '<p class="note">No fallback in this window.</p>'
        ),
        "</section>",
        '<section id="drift"><h2>Drift (PSI against the training window)</h2>',
        _drift(summary["drift"]),
        "</section>",
        '<section id="shadow"><h2>Shadow / canary agreement</h2>',
        _shadow(summary["shadow"]),
        '<p class="note">A canary arm appears in the experiment-arm table above.</p>',
        "</section>",
        '<p class="note">Trigger rate = shown / decisions outside the holdout; acceptance = '
        "accepted / shown; completion = decisions with a step_completed outcome / all "
        "decisions (POST /outcome). JSON: /dashboard.json?window=" + html.escape(name) + "</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
