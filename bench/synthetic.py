"""A synthetic LightGBM bundle, for benchmarks and tests when no trained model exists.

The model is real (LightGBM -> onnxmltools -> ONNX Runtime, isotonic calibration from
scikit-learn, a `Manifest` written by `write_bundle`); only its training data is made up:
random request signals labelled by a noisy version of the rules heuristic. It exercises the
exact serving path of a trained bundle - never a stand-in for one in production.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from core.bundle import FeatureSpec, IsotonicCalibration, Manifest, write_bundle

NUMERIC = (
    "pause_s",
    "scroll_depth",
    "secondary_clicks",
    "cta_fails",
    "click_rate",
    "time_on_step_s",
    "help_hover_s",
    "backs",
    "field_errors",
    "step_visits",
)
DEVICES = ("desktop", "mobile", "tablet")


def synthetic_frame(n: int, seed: int, n_numeric: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns (numeric signals + `device` codes) and labels; extra columns are noise."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {
        "pause_s": rng.exponential(10.0, n),
        "scroll_depth": rng.uniform(0, 100, n),
        "secondary_clicks": rng.poisson(1.5, n).astype(float),
        "cta_fails": rng.poisson(0.7, n).astype(float),
        "click_rate": rng.uniform(0, 1, n),
        "time_on_step_s": rng.exponential(40.0, n),
        "help_hover_s": rng.exponential(1.0, n),
        "backs": rng.poisson(0.3, n).astype(float),
        "field_errors": rng.poisson(0.5, n).astype(float),
        "step_visits": 1 + rng.poisson(0.2, n).astype(float),
    }
    for i in range(len(NUMERIC), n_numeric):
        cols[f"noise_{i}"] = rng.normal(size=n)
    cols["device"] = rng.integers(0, len(DEVICES), n).astype(float)
    logit = (
        -2.0
        + 0.12 * np.minimum(cols["pause_s"], 40)
        + 0.02 * (100 - cols["scroll_depth"])
        + 0.35 * cols["secondary_clicks"]
        + 0.6 * cols["cta_fails"]
        + 0.4 * (cols["device"] == 1)
    )
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    for name in ("pause_s", "scroll_depth"):  # some missing values, as in real data
        cols[name][rng.uniform(size=n) < 0.05] = np.nan
    return cols, labels


def make_bundle(
    directory: Path,
    *,
    version: str = "1",
    run_id: str | None = None,
    n_trees: int = 50,
    n_numeric: int = 10,
    rows: int = 4000,
    seed: int = 0,
    feature_service: str = "intent_model_v1",
    overwrite: bool = False,
) -> Manifest:
    """Train, convert, calibrate and write a bundle to `directory`; returns its manifest."""
    import lightgbm as lgb
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.isotonic import IsotonicRegression

    cols, labels = synthetic_frame(rows, seed, max(n_numeric, len(NUMERIC)))
    names = [c for c in cols if c != "device"] + ["device"]
    matrix = np.column_stack([cols[c] for c in names]).astype(np.float32)
    half = rows // 2
    model = lgb.LGBMClassifier(
        n_estimators=n_trees,
        num_leaves=15,
        learning_rate=0.1,
        random_state=seed,
        n_jobs=1,  # threads only fight each other on small data and shared cores
        verbose=-1,
    )
    model.fit(matrix[:half], labels[:half], categorical_feature=[len(names) - 1])
    raw = model.predict_proba(matrix[half:])[:, 1]
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, labels[half:])
    onx = onnxmltools.convert_lightgbm(
        model,
        initial_types=[("input", FloatTensorType([None, len(names)]))],
        zipmap=False,
        target_opset=15,
    )
    gains = model.booster_.feature_importance("gain")
    share = gains / gains.sum() if gains.sum() > 0 else gains
    medians = np.nanmedian(matrix[:half], axis=0)
    features = [
        FeatureSpec(
            name=name,
            dtype="category" if name == "device" else "float",
            baseline=None if name == "device" else float(medians[i]),
            importance=float(share[i]),
        )
        for i, name in enumerate(names)
    ]
    end = datetime(2025, 1, 31, tzinfo=UTC)
    manifest = Manifest(
        model_name="intent-scorer",
        model_version=version,
        run_id=run_id,
        feature_service=feature_service,
        features=features,
        encodings={"device": {d: i for i, d in enumerate(DEVICES)}},
        calibration=IsotonicCalibration(
            kind="isotonic",
            x=[float(v) for v in iso.X_thresholds_],
            y=[float(v) for v in iso.y_thresholds_],
        ),
        thresholds={},
        metrics={"synthetic": 1.0},
        training_window={"start": end - timedelta(days=90), "end": end},
        onnx_input="input",
        onnx_output="probabilities",
        created_at=datetime.now(UTC),
    )
    return write_bundle(directory, onx.SerializeToString(), manifest, overwrite=overwrite)
