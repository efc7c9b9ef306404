"""Source page / screen / step names -> funnel steps, and the unknown-step rule at import.

A mapping's `steps` renames what a source calls a step ("Identity Verification",
`/onboarding/kyc`) to the funnel's names: the exact table first, then the first matching
regex (RE2, as everywhere in batch code); other names pass through unchanged, so events on
steps the funnel does not have are quarantined as `unknown_step` with the original record,
the same rule `intent validate` applies.
"""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa
import pyarrow.compute as pc

from core.settings import ConfigError
from features.ingest.importers.mapping import StepMapping

_NULL_TEXT = pa.scalar(None, pa.string())


def map_steps(step: pa.Array, mapping: StepMapping) -> pa.Array:
    """Rename the (cleaned) step names the mapping covers; the rest stay as they are."""
    out = step
    done = pc.is_null(step)  # nothing to rename
    if mapping.exact:
        keys = pa.array(list(mapping.exact), pa.string())
        index = pc.index_in(step, value_set=keys)
        found = pc.is_valid(index)
        out = pc.if_else(found, pc.take(pa.array(list(mapping.exact.values())), index), out)
        done = pc.or_(done, found)
    for rule in mapping.regex:
        hit = pc.and_(
            pc.invert(done), pc.fill_null(pc.match_substring_regex(step, rule.pattern), False)
        )
        out = pc.if_else(hit, pa.scalar(rule.step), out)
        done = pc.or_(done, hit)
    return out


def check_targets(mapping: StepMapping, steps: Collection[str], source: str) -> None:
    """Raise ConfigError when the mapping renames a name to a step the funnel lacks (a typo
    would otherwise quarantine every event of that step)."""
    wrong = [f"{where}: {step!r}" for where, step in mapping.targets() if step not in steps]
    if wrong:
        raise ConfigError(
            f"{source}: " + "; ".join(wrong) + f" not a step of funnel.yaml ({', '.join(steps)})"
        )
