"""The reference profile of a bundle's training window, and PSI against it.

Training writes `reference_profile.json` next to the manifest (its sha256 in the manifest's
`reference_profile_sha256`); the server compares rolling windows of served features and
scores with it (`serving.drift`). Per feature: numeric columns get decile cut points and the
training share per bin; categorical columns (integer codes) get one bin per code seen in
training. The last share of every profile is "missing" (NaN, or a category unseen in
training), so a feature that stops arriving shows up as drift too.

PSI = sum((a - e) * ln(a / e)) over bins = KL(a||e) + KL(e||a) (scipy's `rel_entr`), on
shares floored at `SHARE_FLOOR` so an empty bin does not make it infinite.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.bundle import PROFILE_FILE
from core.settings import format_validation_error

SHARE_FLOOR = 1e-4  # the usual PSI smoothing: an empty bin counts as 0.01 %
DECILES = tuple(q / 10 for q in range(1, 10))


class ProfileError(ValueError):
    """A reference profile is malformed or does not match the manifest's checksum."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ColumnProfile(_Strict):
    """Bins of one column: numeric cut points or category codes, then shares (+ missing)."""

    name: str = Field(min_length=1)
    kind: Literal["numeric", "category"]
    edges: list[float]  # numeric: increasing interior cut points; category: the codes
    shares: list[float] = Field(min_length=1)  # value bins, then the missing bin

    @model_validator(mode="after")
    def _consistent(self) -> ColumnProfile:
        bins = len(self.edges) + 1 if self.kind == "numeric" else len(self.edges)
        if len(self.shares) != bins + 1:
            raise ValueError(f"{self.name}: {len(self.shares)} shares for {bins} bins + missing")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"{self.name}: edges must be strictly increasing")
        if min(self.shares) < 0 or abs(sum(self.shares) - 1.0) > 1e-6:
            raise ValueError(f"{self.name}: shares must be >= 0 and sum to 1")
        return self


class ReferenceProfile(_Strict):
    schema_version: Literal[1] = 1
    rows: int = Field(ge=1)
    features: list[ColumnProfile]
    score: ColumnProfile


def bin_shares(values: np.ndarray, col: ColumnProfile) -> np.ndarray:
    """Share of `values` in each of `col`'s bins (the last one: missing / unseen)."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    edges = np.asarray(col.edges, dtype=np.float64)
    n_value_bins = len(col.shares) - 1
    if col.kind == "numeric":
        idx = np.searchsorted(edges, values, side="right")
    else:
        pos = np.minimum(np.searchsorted(edges, values), max(len(edges) - 1, 0))
        hit = edges[pos] == values if len(edges) else np.zeros(len(values), dtype=bool)
        idx = np.where(hit, pos, n_value_bins)
    idx = np.where(missing, n_value_bins, idx)
    counts = np.bincount(idx.astype(np.int64), minlength=n_value_bins + 1).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def profile_column(
    values: np.ndarray, name: str, kind: Literal["numeric", "category"]
) -> ColumnProfile:
    """Decile cut points (numeric) or the codes seen (category), with the training shares."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if kind == "numeric":
        edges = np.unique(np.quantile(finite, DECILES)) if len(finite) else np.array([])
    else:
        edges = np.unique(finite)
    col = ColumnProfile(
        name=name,
        kind=kind,
        edges=edges.tolist(),
        shares=[1.0] + [0.0] * (len(edges) + (kind == "numeric")),
    )
    shares = bin_shares(values, col)
    return col.model_copy(update={"shares": shares.tolist()})


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index of `actual` against `expected` (shares over the same bins)."""
    from scipy.special import rel_entr

    e = np.maximum(np.asarray(expected, dtype=np.float64), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), SHARE_FLOOR)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs shares over the same bins, got {e.shape} and {a.shape}")
    return float(np.sum(rel_entr(a, e) + rel_entr(e, a)))


def build_profile(
    matrix: np.ndarray, names: Sequence[str], categorical: Iterable[str], scores: np.ndarray
) -> ReferenceProfile:
    """The profile of a training window: encoded features in model order and their scores."""
    cats = set(categorical)
    if matrix.shape[1] != len(names) or matrix.shape[0] != len(scores):
        raise ProfileError(
            f"profile needs a [rows, {len(names)}] matrix and one score per row, "
            f"got {matrix.shape} and {len(scores)} scores"
        )
    if not len(scores):
        raise ProfileError("cannot profile an empty training window")
    features = [
        profile_column(matrix[:, i], n, "category" if n in cats else "numeric")
        for i, n in enumerate(names)
    ]
    return ReferenceProfile(
        rows=len(scores), features=features, score=profile_column(scores, "score", "numeric")
    )


def profile_bytes(profile: ReferenceProfile) -> bytes:
    return profile.model_dump_json(indent=1).encode()


def load_profile(directory: Path, expected_sha256: str | None) -> ReferenceProfile | None:
    """The bundle's profile, or None when it has none (bundles exported before profiles)."""
    path = Path(directory) / PROFILE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if expected_sha256 is not None:
            raise ProfileError(
                f"{path}: missing, but the manifest lists its checksum; re-export the bundle"
            ) from None
        return None
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ProfileError(
            f"{path}: checksum mismatch (manifest {expected_sha256[:12]}..., file "
            f"{digest[:12]}...); re-export the bundle"
        )
    try:
        return ReferenceProfile.model_validate(json.loads(data))
    except (json.JSONDecodeError, ValidationError) as exc:
        detail = (
            format_validation_error(exc, str(path))
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise ProfileError(f"{path}: not a reference profile: {detail}") from exc
