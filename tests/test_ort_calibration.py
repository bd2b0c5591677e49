"""ONNX Runtime's histogram calibration (jetson's percentile ranges) in bounded memory: how much it holds an image,
checked against the calibrator itself, the chunk that keeps it under the limit, and a chunked export whose ranges
match the one-pass export's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.errors import BadInput
from edgevision.export.ort_quantize import calibrated_bytes_per_image, calibration_chunk, calibration_hold_bytes


def _small_graph(path) -> onnx.ModelProto:
    """x [1, 64, 32] -> MatMul -> Relu -> MatMul -> Softmax, shapes inferred as the quantizer's pre-processing does."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((32, 48)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((48, 16)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["z"], name="mm2"),
             helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 16])], [w1, w2])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    model.ir_version = 8
    onnx.save(model, str(path))
    return model


@pytest.mark.parametrize("op_types", [["MatMul"], None])
def test_bytes_per_image_are_what_the_histogram_calibrator_keeps(tmp_path, op_types):
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    model = _small_graph(tmp_path / "g.onnx")
    # quantize_static hands the calibrator every op type its quantizer knows when it is given none
    kinds = op_types or sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(tmp_path / "g.onnx", kinds, augmented_model_path=str(tmp_path / "aug.onnx"),
                                   calibrate_method=CalibrationMethod.Percentile)
    names = [o.name for o in calibrator.infer_session.get_outputs()]
    outputs = calibrator.infer_session.run(None, {"x": np.ones((1, 64, 32), np.float32)})
    kept = sum(a.nbytes for n, a in zip(names, outputs) if n in calibrator.tensors_to_calibrate)
    assert kept > 0 and calibrated_bytes_per_image(model, op_types) == kept


@pytest.mark.parametrize("images, per_image, hold, chunk", [
    (64, 10, 640, None),   # all of it fits: one pass, as before
    (64, 10, 639, 32),     # the largest divisor of 64 that fits
    (64, 250, 2000, 8),
    (60, 10, 450, 30),
    (7, 10, 60, 1),        # a prime count: one image at a time
    (5, 100, 10, 1),       # not even one image fits: still one at a time
])
def test_the_chunk_is_the_largest_divisor_of_the_image_count_under_the_limit(images, per_image, hold, chunk):
    assert calibration_chunk(images, per_image, hold) == chunk


def test_a_bad_chunk_argument_raises():
    with pytest.raises(ValueError, match="images=0"):
        calibration_chunk(0, 10, 100)


@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_a_bad_memory_limit_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv("EDGEVISION_CALIBRATION_HOLD_MB", value)
    with pytest.raises(BadInput, match=f"EDGEVISION_CALIBRATION_HOLD_MB='{value}'"):
        calibration_hold_bytes()


def test_the_memory_limit_defaults_to_2_gb_and_reads_megabytes(monkeypatch):
    monkeypatch.delenv("EDGEVISION_CALIBRATION_HOLD_MB", raising=False)
    assert calibration_hold_bytes() == 2048 << 20
    monkeypatch.setenv("EDGEVISION_CALIBRATION_HOLD_MB", "512")
    assert calibration_hold_bytes() == 512 << 20


def test_a_jetson_export_past_the_limit_calibrates_in_chunks_with_the_same_ranges(tmp_path, monkeypatch):
    """Percentile ranges from merged per-chunk histograms match the one-pass ranges.

    A histogram percentile is exact only to a bin (1/2048 of the tensor's range). Chunks keep the first chunk's bin
    width, which is as fine or finer, so a heavy-tailed tensor, whose 99.999th percentile sits a few one-pass bins
    from zero, may move by several per cent; every other scale stays within 0.1 %.
    """
    from edgevision.export import export_bundle

    def activation_scales(bundle) -> dict[str, float]:
        model = onnx.load(str(bundle.path / "image_encoder.onnx"))
        constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        return {n.input[0]: float(constants[n.input[1]]) for n in model.graph.node
                if n.op_type == "QuantizeLinear" and constants.get(n.input[1], np.zeros(2)).size == 1}

    photos = Path(__file__).resolve().parents[1] / "calibration" / "images"  # 7 photos: a prime count, chunks of 1
    kw = dict(random_weights=True, imgsz=128, measure_reference=False, calib=photos)
    whole = export_bundle("efficient-sam-vitt", "jetson", "int8", tmp_path / "whole", **kw)
    monkeypatch.setenv("EDGEVISION_CALIBRATION_HOLD_MB", "0.000001")
    chunked = export_bundle("efficient-sam-vitt", "jetson", "int8", tmp_path / "chunked", **kw)

    assert "calibration_chunk" not in whole.meta.graphs["image_encoder"].quantization
    assert chunked.meta.graphs["image_encoder"].quantization["calibration_chunk"] == 1
    assert chunked.meta.graphs["image_encoder"].quantization["calibration_images"] == 7
    one_pass, merged = activation_scales(whole), activation_scales(chunked)
    assert len(one_pass) > 20 and merged.keys() == one_pass.keys()
    off = np.abs(np.array([merged[k] / one_pass[k] for k in one_pass]) - 1)
    assert (off > 0.001).sum() <= len(off) // 20 and off.max() < 0.1, off
