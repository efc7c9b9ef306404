"""`intent import segment FILE --suggest-mapping`: what a Segment export holds, and a mapping
skeleton to edit.

A survey counts the file's calls, track event names, page / screen names, the step names the
mapping would read, and each event's property keys (with whether the values are numbers and
their range). The skeleton is the base mapping with a `track` table for every name in the
file (the base's rule where it has one, otherwise a guess from the name, marked for review,
or a commented line when there is no guess), a `value` path and `unit` guessed from the
property keys (`duration_ms` -> `unit: ms`, a depth within 0..1 -> `unit: fraction`), and a
`steps` table renaming the file's page / screen / step names to funnel steps where the
normalised name is one (or the base mapping renames it). Nothing is silently mapped:
every guess carries a comment.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from features.events import DEPTH_TYPES, EventType
from features.ingest.importers.mapping import PathSource, SegmentMapping, SegmentRule
from features.ingest.importers.segment import field_paths, first_present, get_path
from features.ingest.importers.steps import map_steps

# A track name's words -> the event type it most likely is (first match wins); a guess the
# skeleton marks for review, never a silent mapping.
_NAME_GUESSES: tuple[tuple[str, EventType], ...] = (
    (r"\b(fail|failed|failure|rejected|disabled)\b", EventType.CTA_FAIL),
    (r"\berror\b", EventType.FIELD_ERROR),
    (r"\bscroll", EventType.SCROLL),
    (r"\bhover", EventType.HOVER),
    (r"\bhelp\b|\bfaq\b|\bsupport\b", EventType.HELP_OPEN),
    (r"\bback\b", EventType.BACK),
    (r"\bexit\b|\bleave|\bclose", EventType.EXIT_INTENT),
    (r"\b(onboarding|signup|sign up|registration) (completed|finished)\b", EventType.GOAL),
    (r"\b(completed|submitted|finished|done)\b", EventType.STEP_COMPLETE),
    (r"\badd(ed)?[ _]to[ _](cart|basket|bag)\b|\bproduct added\b", EventType.ADD_TO_CART),
    (r"\b(click|clicked|tap|tapped|pressed)\b", EventType.CLICK),
    (r"\b(viewed|view|opened|shown)\b", EventType.VIEW),
)
_HELP_NAME = re.compile(r"help|tooltip|faq|hint")
_DEPTH_KEY = re.compile(r"depth|percent|scroll")
_DURATION_KEY = re.compile(r"duration|time|seconds|_s$|_ms$|millis")


@dataclass
class KeyStats:
    """One property key of one event name: how often, and the range of its numbers."""

    count: int = 0
    numbers: int = 0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, value: Any) -> None:
        self.count += 1
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.numbers += 1
            self.low, self.high = min(self.low, value), max(self.high, value)


@dataclass
class Survey:
    """What one Segment export holds (every count is a number of lines)."""

    lines: int = 0
    blank: int = 0
    not_json: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    track: Counter[str] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)  # page / screen `name`
    steps: Counter[str] = field(default_factory=Counter)  # what the mapping reads as the step
    keys: dict[str, dict[str, KeyStats]] = field(default_factory=dict)  # event -> key -> stats

    def key_counts(self) -> Counter[str]:
        """Property keys over all events."""
        out: Counter[str] = Counter()
        for keys in self.keys.values():
            for key, stats in keys.items():
                out[key] += stats.count
        return out


def survey(lines: Iterable[bytes | str], mapping: SegmentMapping) -> Survey:
    """Count calls, names, step names and property keys of a JSON-lines export."""
    out = Survey()
    step_paths = dict(field_paths(mapping))["step"]
    for line in lines:
        out.lines += 1
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if not text.strip():
            out.blank += 1
            continue
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            out.not_json += 1
            continue
        call = str(message.get("type"))
        out.calls[call] += 1
        event = None
        if call == "track":
            event = str(message.get("event"))
            out.track[event] += 1
        elif call in ("page", "screen"):
            event = f"{call}: {message.get('name')}"
            if isinstance(message.get("name"), str):
                out.pages[message["name"]] += 1
        step = _step_name(message, mapping, call, step_paths)
        if step is not None:
            out.steps[step] += 1
        properties = message.get("properties")
        if event is not None and isinstance(properties, dict):
            stats = out.keys.setdefault(event, {})
            for key, value in properties.items():
                stats.setdefault(key, KeyStats()).add(value)
    return out


def _step_name(
    message: dict, mapping: SegmentMapping, call: str, paths: list[tuple[str, ...]]
) -> str | None:
    """The step text the mapping would read: a call rule's step path, else the fields'."""
    rule = mapping.calls.get(call) if call in ("page", "screen", "identify") else None
    source = rule.step if rule is not None else None
    if isinstance(source, PathSource):
        value = get_path(message, tuple(source.path.split(".")))
    else:
        value = first_present(message, paths)
    return (value.strip() or None) if isinstance(value, str) else None


def guess_type(name: str) -> EventType | None:
    """The event type a track name most likely means (None: no idea)."""
    lowered = name.lower().replace("_", " ")
    return next((t for pattern, t in _NAME_GUESSES if re.search(pattern, lowered)), None)


def normalise(name: str) -> str:
    """`Identity Verification`, `/onboarding/identity-verification` -> `identity_verification`
    (the last path segment, lower case, non-alphanumerics as `_`)."""
    last = name.strip().rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9]+", "_", last.lower()).strip("_")


def _value_guess(etype: EventType, keys: dict[str, KeyStats]) -> tuple[str, str] | None:
    """(property key, unit) holding this type's `value`, from the key names and ranges."""
    numeric = {k: s for k, s in keys.items() if s.numbers}
    if etype in DEPTH_TYPES:
        for key, stats in numeric.items():
            if _DEPTH_KEY.search(key.lower()):
                return key, "fraction" if stats.high <= 1.0 else "percent"
    elif etype == EventType.HOVER:
        for key in numeric:
            if _DURATION_KEY.search(key.lower()):
                unit = "ms" if re.search(r"_ms$|millis", key.lower()) else "s"
                return key, unit
    return None


def _guessed_rule(name: str, etype: EventType, keys: Collection[str]) -> SegmentRule:
    """A guessed rule with the shipped mapping's target convention (a failed CTA targets
    `cta`, a help hover or open `help`, a field error its `field` property), so the
    signals' target lists recognise it."""
    fields: dict[str, Any] = {"type": etype}
    if etype == EventType.CTA_FAIL:
        fields["target"] = {"const": "cta"}
    elif etype in (EventType.HOVER, EventType.HELP_OPEN) and _HELP_NAME.search(name.lower()):
        fields["target"] = {"const": "help"}
    elif etype == EventType.FIELD_ERROR and "field" in keys:
        fields["target"] = {"path": "properties.field"}
    return SegmentRule.model_validate(fields)


def _events(count: int) -> str:
    return f"{count:,} event" + ("" if count == 1 else "s")


def _q(text: str) -> str:
    """A YAML scalar for any text (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _rule_yaml(rule: SegmentRule) -> str:
    parts = [f"type: {rule.type.value}"]
    for name in ("step", "target", "value"):
        source = getattr(rule, name)
        if source is None:
            continue
        inner = source.model_dump(exclude_none=True)
        body = ", ".join(f"{k}: {_q(v) if isinstance(v, str) else v}" for k, v in inner.items())
        parts.append(f"{name}: {{{body}}}")
    return "{" + ", ".join(parts) + "}"


def skeleton(found: Survey, base: SegmentMapping, funnel: Collection[str], source: str) -> str:
    """The mapping skeleton (YAML text with review comments) for what `found` holds."""
    out = [
        f"# Mapping skeleton suggested from {source} ({found.lines:,} lines): edit, then",
        f"#   intent import segment {source} --mapping THIS_FILE",
        "# Lines marked `review` are guesses; commented lines are names with no guess (their",
        "# events are quarantined as unknown_event_name until you map or ignore them).",
        "kind: segment",
        f"name: {base.name}",
        "",
        "fields:",
    ]
    for name, paths in base.fields.model_dump().items():
        out.append(f"  {name}: [{', '.join(paths)}]")
    out += ["", "calls:"]
    for call, rule in base.calls.items():
        out.append(f"  {call}: {_rule_yaml(rule)}")
    out += ["", "# track event names in the file (count), most frequent first", "track:"]
    unguessed: list[str] = []
    for name, count in found.track.most_common():
        keys = found.keys.get(name, {})
        rule = base.track.get(name)
        note = "as in the shipped mapping"
        if rule is None:
            etype = guess_type(name)
            if etype is None:
                unguessed.append(f"  # {_q(name)}: {{type: ?}}   # {_events(count)}: no guess")
                continue
            rule = _guessed_rule(name, etype, keys)
            note = f"review: guessed {etype.value} from the name"
        value = _value_guess(rule.type, keys)
        if value is not None and rule.value is None:
            key, unit = value
            raw = rule.model_dump(exclude_none=True)
            rule = SegmentRule.model_validate(
                {**raw, "value": {"path": f"properties.{key}", "unit": unit}}
            )
            note += f"; value from properties.{key} in {unit}"
        out.append(f"  {_q(name)}: {_rule_yaml(rule)}   # {_events(count)}; {note}")
    out += unguessed
    if not found.track:
        out.append("  # (no track events in the file)")
        out.append(f"  {_q('Step Viewed')}: {{type: view}}")
    out += ["", "# track names to leave out on purpose (counted as skipped, not quarantined)"]
    out.append("ignore_track: []")
    exact: list[str] = []
    unmapped: list[str] = []
    names = [name for name, _ in found.steps.most_common()]
    by_base = map_steps(pa.array(names, pa.string()), base.steps).to_pylist()
    for (name, count), mapped in zip(found.steps.most_common(), by_base, strict=True):
        if name in funnel:
            continue
        if mapped in funnel:
            exact.append(f"    {_q(name)}: {mapped}   # {_events(count)}; as the base mapping")
        elif normalise(name) in funnel:
            exact.append(f"    {_q(name)}: {normalise(name)}   # {_events(count)}; review")
        else:
            unmapped.append(f"    # {_q(name)}: ?   # {_events(count)}: not a funnel step")
    out += ["", "# page / screen / step names in the file -> funnel steps", "steps:"]
    out += ["  exact:", *exact] if exact else ["  exact: {}"]
    out += unmapped
    out += [
        "  # or by pattern (RE2, searched; anchor it), first match wins:",
        "  # regex: [{pattern: '^/onboarding/kyc', step: identity_verification}]",
        "  regex: []",
        "",
        f"# funnel steps: {', '.join(funnel)}",
        "# property keys (events): "
        + ", ".join(f"{k} ({n:,})" for k, n in found.key_counts().most_common()),
    ]
    return "\n".join(out) + "\n"
