"""Split thresholds rounded down to float32: LightGBM unchanged, ONNX on the same branches."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import onnxmltools
import onnxruntime as ort
from onnxmltools.convert.common.data_types import FloatTensorType

from training.model import float32_thresholds


def onnx_scores(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    graph = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        zipmap=False,
        target_opset=15,
    )
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": x.astype(np.float32)})[0][:, 1]


def test_inputs_on_a_rounded_up_threshold_agree_after_rounding_down() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))  # float64 data: thresholds are not float32 values
    x[:, 2] = rng.integers(0, 5, 3000)  # a categorical column keeps its bitset splits
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=3000) > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "num_threads": 1}
    original = lgb.train(params, lgb.Dataset(x, y, categorical_feature=[2]), 20)
    dump = original.dump_model()

    # probe rows sitting exactly on float32(t) where rounding to nearest went above t
    probes = []
    for tree in dump["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" not in node:
                continue
            stack += [node["left_child"], node["right_child"]]
            if (
                node["decision_type"] == "<="
                and float(np.float32(node["threshold"])) > node["threshold"]
            ):
                row = np.zeros(3, dtype=np.float32)
                row[node["split_feature"]] = np.float32(node["threshold"])
                probes.append(row)
    assert probes, "expected some thresholds to round up"
    probe = np.array(probes, dtype=np.float32)

    before = np.abs(original.predict(probe.astype(np.float64)) - onnx_scores(original, probe))
    assert before.max() > 1e-4  # the mismatch this guards against is real

    rounded = lgb.Booster(model_str=float32_thresholds(original.model_to_string()))
    sample = np.vstack([probe, x[:500].astype(np.float32)])
    np.testing.assert_array_equal(  # LightGBM's own answers on float32 inputs are unchanged
        rounded.predict(sample.astype(np.float64)), original.predict(sample.astype(np.float64))
    )
    after = np.abs(rounded.predict(sample.astype(np.float64)) - onnx_scores(rounded, sample))
    assert after.max() < 1e-6
