"""The training frame: decision points joined point-in-time with the FeatureService, and the
model's feature schema (which columns, in which order, how categories are encoded).

The FeatureService is the feature contract; the request context the server passes beside
it (step, device, channel, moment) is added as categorical features. Ids, timestamps, the
label and the simulator's oracle are never features, whatever the config says: a model that
reads them learns the data set, not the user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.store.definitions import JOIN_KEYS, PREFIXES, USER_STATS
from training.config import RETURNING, FeatureSelection

if TYPE_CHECKING:
    from core.layout import Layout
    from features.store.config import FeatureStoreConfig

LABEL = "label"
ORACLE = "oracle_p"
ROW_WEIGHT = "row_weight"  # exposure weight of a decision point (see `weigh_by_exposure`)
TIMESTAMP = "event_timestamp"
# Columns that identify a row or leak the answer: never model inputs.
NEVER_FEATURES: frozenset[str] = frozenset(
    {
        "decision_key",
        "user_id",
        "anonymous_id",
        "session_id",
        "episode",
        TIMESTAMP,
        "request_ts",
        LABEL,
        ORACLE,
        ROW_WEIGHT,
    }
)
DECISION_POINTS_FILE = "decision_points.parquet"
EXPOSURE_FILE = "decision_exposure.parquet"  # written by `intent loop exposure`


class TrainingError(ValueError):
    """The data cannot train a model (missing tables, too few rows, a forbidden feature...)."""


@dataclass(frozen=True)
class FeatureSchema:
    """Model inputs in order; categorical ones carry their {category: code} encoding."""

    names: tuple[str, ...]
    encodings: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n in self.encodings)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, n in enumerate(self.names) if n in self.encodings]


def feature_names(
    columns: Iterable[str], service_features: Sequence[str], selection: FeatureSelection
) -> list[str]:
    """Service features (minus the configured exclusions) then the context features.

    Raises TrainingError when a forbidden column is asked for, or a feature is not a column.
    """
    forbidden = sorted(NEVER_FEATURES & {*service_features, *selection.context})
    if forbidden:
        raise TrainingError(f"ids, timestamps, label and oracle are never features: {forbidden}")
    unknown = sorted(set(selection.exclude) - set(service_features))
    if unknown:
        raise TrainingError(f"features.exclude names features the service lacks: {unknown}")
    names = [f for f in service_features if f not in selection.exclude]
    names += [c for c in selection.context if c not in names]
    missing = [n for n in names if n not in set(columns)]
    if missing:
        raise TrainingError(f"training frame lacks feature columns: {', '.join(missing)}")
    return names


def fit_schema(train: pd.DataFrame, names: Sequence[str], context: Sequence[str]) -> FeatureSchema:
    """Encodings fitted on training rows: context features and text columns are categories.

    Codes follow the sorted category names, so the same data gives the same codes. A
    category first seen after training encodes as missing - exactly what the server does.
    """
    encodings: dict[str, dict[str, int]] = {}
    for name in names:
        column = train[name]
        if name in context or not pd.api.types.is_numeric_dtype(column):
            values = column.dropna().unique()
            not_text = [v for v in values if not isinstance(v, str)][:5]
            if not_text:
                raise TrainingError(
                    f"categorical feature {name!r} must hold text, found {not_text!r}"
                )
            encodings[name] = {v: i for i, v in enumerate(sorted(values))}
    return FeatureSchema(tuple(names), encodings)


def encode(frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """Frame -> float32 matrix in schema order (`core.bundle.Bundle.vectorize_frame`'s
    semantics: category codes, unknown category or missing value -> NaN)."""
    out = np.full((len(frame), len(schema.names)), np.nan, dtype=np.float32)
    for i, name in enumerate(schema.names):
        column = frame[name]
        encoding = schema.encodings.get(name)
        if encoding is not None:
            codes = column.map(encoding)
            out[:, i] = pd.to_numeric(codes, errors="coerce").to_numpy(np.float32)
        else:
            try:
                out[:, i] = pd.to_numeric(column).to_numpy(np.float32)
            except (ValueError, TypeError) as exc:
                raise TrainingError(f"feature {name!r} is not numeric: {exc}") from exc
    return out


def returning_users(frame: pd.DataFrame) -> pd.Series:
    """True where the user had a stored user_stats row at decision time (a returning user;
    the server's `user_known`), False for a first session."""
    prefix = PREFIXES[USER_STATS]
    key = JOIN_KEYS[USER_STATS]
    user_columns = [c for c in frame.columns if c.startswith(prefix) and c != key]
    if not user_columns:
        return pd.Series(False, index=frame.index)
    return frame[user_columns].notna().any(axis=1)


def segment_labels(frame: pd.DataFrame, segment: str) -> pd.Series:
    """The segment value of every row as text (missing -> "unknown")."""
    if segment == RETURNING:
        return returning_users(frame).map({True: "returning", False: "new"})
    if segment not in frame.columns:
        raise TrainingError(f"segment {segment!r} is not a column of the frame")
    return frame[segment].astype("string").fillna("unknown").astype(str)


# --- I/O edge ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingFrame:
    """The point-in-time frame and the contract it was read through."""

    frame: pd.DataFrame
    service_name: str
    service_features: tuple[str, ...]
    source: str  # where the decision points came from (dataset lineage)
    excluded_by_exposure: int = 0  # decision points of weight 0 (see `weigh_by_exposure`)


def weigh_by_exposure(points: pd.DataFrame, exposure: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Decision points weighted by their exposure to triggers (`intent loop exposure`).

    A trigger changes the outcome the label records, so a treated row shows behaviour under
    the policy, not without it; trained on, it teaches the next model that the signals the
    policy acts on are less risky than they are. Rows of weight 0 leave the frame; the rest
    carry `row_weight` (1 for decision points the exposure file does not list). Returns the
    frame and how many rows left.
    """
    weights = exposure.drop_duplicates("decision_key").set_index("decision_key")["weight"]
    w = points["decision_key"].map(weights).fillna(1.0).astype(float)
    keep = (w > 0).to_numpy()
    kept = points.loc[keep].assign(**{ROW_WEIGHT: w[keep].to_numpy()})
    return kept.reset_index(drop=True), int((~keep).sum())


def load_training_frame(
    layout: Layout, fs_cfg: FeatureStoreConfig, *, exposure_weights: bool = False
) -> TrainingFrame:
    """Decision points of `layout.features` joined point-in-time through the applied
    FeatureService (Feast `historical_frame`); weighted by exposure when asked and the
    exposure file exists."""
    from features.store.repo import ServiceNotApplied, service_frame

    path = layout.features / DECISION_POINTS_FILE
    if not path.exists():
        raise TrainingError(f"{path}: not found; run `intent features build` first")
    points = pd.read_parquet(path)
    excluded = 0
    exposure_path = layout.features / EXPOSURE_FILE
    if exposure_weights and exposure_path.exists():
        points, excluded = weigh_by_exposure(points, pd.read_parquet(exposure_path))
    if points.empty:
        raise TrainingError(f"{path}: no decision points to train on")
    try:
        frame, service = service_frame(layout, fs_cfg, points)
    except ServiceNotApplied as exc:
        raise TrainingError(str(exc)) from exc
    names = tuple(f.name for p in service.feature_view_projections for f in p.features)
    return TrainingFrame(frame, service.name, names, str(path), excluded)
