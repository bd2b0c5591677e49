"""Accuracy-controlled INT8 (--max-drop) on a model built to break plain INT8, on every target."""

import json

import pytest

from edgevision.bundle import load_bundle
from edgevision.check.compare import check_bundle
from edgevision.cli import main

MODEL = "fast-yolo-demo-outlier"


def test_the_outlier_variant_is_the_same_function_in_fp32():
    import torch

    from edgevision.models.loading import build_model
    from edgevision.models.registry import get_variant

    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a = build_model(get_variant("fast-yolo-demo"))(x)
        b = build_model(get_variant(MODEL))(x)
    assert torch.allclose(a, b, atol=1e-4)


# rpi (PT2E) runs the same loop but each attempt is a full LiteRT conversion (about a minute here); its
# before/after is in benchmarks/RESULTS.md rather than in the suite. intel-npu and cpu run NNCF's
# quantize_with_accuracy_control (OpenVINO IR, ONNX) after the plain attempt.
# CI runs the cpu case; the other targets' (2-4 minutes each on 2 cores) run with `-m heavy`
@pytest.mark.parametrize("target", ["cpu", pytest.param("jetson", marks=pytest.mark.heavy),
                                    pytest.param("intel-npu", marks=pytest.mark.heavy)])
def test_plain_int8_breaks_and_max_drop_brings_it_back(capsys, export_once, target, tmp_path):
    plain = export_once(MODEL, target, "int8")
    report = check_bundle(plain)
    assert not report["passed"], "plain INT8 must break the budget on the outlier model"
    out = tmp_path / "controlled"
    # the spine's INT8 budget: 1 point of mAP@0.5 (symmetric INT8 on jetson costs ~0.9 even without the outlier).
    # On cpu, mean-minmax calibration with 7-bit weights already keeps plain INT8 within 1.0 of mAP@0.5 on this
    # model (0.98; it fails the check on mAP@0.5:0.95), so the search is exercised with a 0.5 budget there.
    budget = 0.5 if target == "cpu" else 1.0
    code = main(["export", MODEL, "--target", target, "--max-drop", str(budget), "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    meta = load_bundle(out).meta
    control = meta.graphs["model"].quantization["accuracy_control"]
    assert control["budget_met"] and control["best"]["drop"] <= budget
    assert control["steps"][0]["drop"] > budget  # the first attempt is plain INT8
    assert check_bundle(load_bundle(out))["passed"]
    if target in ("intel-npu", "cpu"):
        assert control["steps"][-1]["float_layers"], "NNCF kept at least one layer in float"
        assert meta.graphs["model"].quantization["tool"] == "nncf.quantize_with_accuracy_control"


@pytest.mark.slow
def test_an_unreachable_budget_keeps_the_best_bundle_and_exits_1(capsys, tmp_path):
    out = tmp_path / "b"
    code = main(["export", MODEL, "--target", "cpu", "--max-drop", "0.5", "--max-float-layers", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "budget_met: false" in err and "drop" in err
    meta = json.loads((out / "edgevision.json").read_text())
    assert meta["graphs"]["model"]["quantization"]["budget_met"] is False


def test_max_drop_needs_int8_and_real_weights(capsys):
    assert main(["export", "fast-yolo-demo", "--precision", "fp32", "--max-drop", "1"]) == 2
    assert main(["export", "fast-yolo-demo", "--random-weights", "--max-drop", "1"]) == 2


def test_an_attempt_over_the_layer_limit_is_recorded_but_never_kept():
    from edgevision.export.accuracy_control import Attempt, ControlResult

    plain = Attempt([], 70.0, 1.2)
    # NNCF reverts quantizer groups: one iteration can leave more layers float than the user allowed
    nncf = Attempt([f"/blocks.{i}/attn/MatMul" for i in range(24)], 71.3, -0.1)
    result = ControlResult("top1", 71.2, 0.5, 2, [plain, nncf])
    assert result.best is plain and not result.budget_met
    assert result.over_limit_success() is nncf
    steps = result.to_json()["steps"]
    assert [s["within_limit"] for s in steps] == [True, False]
    assert result.to_json()["max_float_layers"] == 2
    # within the limit, the same attempt wins
    assert ControlResult("top1", 71.2, 0.5, 24, [plain, nncf]).best is nncf


def test_the_rpi_ranking_proxy_keeps_the_pytorch_module_of_every_quantized_linear(tmp_path):
    """rpi's --max-drop ranks PyTorch modules on an ONNX Runtime QDQ proxy. ONNX Runtime's pre-processing drops
    the exporter's module scopes and fuses MatMul+Add into Gemm under a new name; without the scopes the ranking
    was empty and the search stopped after plain INT8 (found on deit-tiny-demo)."""
    import numpy as np
    import onnx
    import torch

    from edgevision.bundle import TensorSpec
    from edgevision.check.per_layer import _onnx_nodes
    from edgevision.config import get_target, load_recipe
    from edgevision.export.base import ExportContext
    from edgevision.export.ort_quantize import quantize_qdq
    from edgevision.graphs import export_onnx

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))

        def forward(self, x):
            return self.model(x)

    fp32 = tmp_path / "model.onnx"
    export_onnx(Wrapped().eval(), fp32, inputs=[TensorSpec(name="x", shape=[1, 3, 8], dtype="float32")],
                output_names=["y"])
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.normal(size=(1, 3, 8)).astype(np.float32)} for _ in range(8)]
    recipe = load_recipe("deit-tiny-demo", "classify")
    ctx = ExportContext(fp32, tmp_path, "int8", get_target("rpi"), recipe, 8, feeds)
    out = tmp_path / "proxy.onnx"
    quantize_qdq(ctx, out, symmetric_activations=True, op_types=["MatMul", "Gemm"], calibration_method="percentile")
    scopes = {n.scope for n in _onnx_nodes(onnx.load(str(out))) if n.op_type in ("MatMul", "Gemm")}
    assert scopes == {"0", "2"}, scopes  # model.0 and model.2: the two Linears
