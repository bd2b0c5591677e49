"""cpu target: ONNX for ONNX Runtime's CPU provider (OpenVINO on CPU reads the same file).

INT8 is static QDQ from ONNX Runtime's own quantizer with uint8 activations and per-channel int8 weights:
the combination ORT's x86 kernels run natively (symmetric int8 activations fall back to float there).
Weights use the profile's ``weight_bits``: 7 for the cpu profile, so that x86 CPUs without VNNI, whose u8 x s8
kernels saturate pairs of products in 16 bits, compute exactly what VNNI CPUs compute (see config.TargetProfile).
The detection head's tail (from the first Sigmoid/Softmax on) stays float, as the recipe says.
"""

from __future__ import annotations

import shutil

from edgevision.export.base import ArtifactInfo, ExportContext, quiet_progress
from edgevision.export.onnx_graph import ensure_node_names, simplify_input_stem
from edgevision.export.ort_quantize import quantize_qdq


def export_artifact(ctx: ExportContext) -> ArtifactInfo:
    out = ctx.workdir / f"{ctx.name}.onnx"
    if ctx.precision == "fp32":
        shutil.copyfile(ctx.onnx_fp32, out)
        return ArtifactInfo(out.name, "onnx")
    if ctx.options.get("accuracy_control"):
        return quantize_with_accuracy_control(ctx, out)
    return quantize_qdq(ctx, out, symmetric_activations=False, op_types=ctx.recipe.quantization.op_types_for("cpu"))


def quantize_with_accuracy_control(ctx: ExportContext, out) -> ArtifactInfo:
    """NNCF's ONNX quantize_with_accuracy_control on the FP32 graph, with edgevision's metric (the --max-drop
    path, taken when plain INT8 misses the budget)."""
    import logging

    import nncf
    import onnx
    import onnxruntime

    from edgevision.export.nncf_quantize import nncf_accuracy_control

    nncf.set_log_level(logging.ERROR)
    control = ctx.options["accuracy_control"]
    with quiet_progress():
        source = onnx.load(str(ctx.onnx_fp32))
        ensure_node_names(source)
        simplify_input_stem(source)
        quantized = nncf_accuracy_control(source, ctx, control["eval_set"], control["io"],
                                          control["metric"], control["max_drop"], backend="onnx",
                                          max_layers=control["max_layers"])
    onnx.save(quantized, str(out))
    q = ctx.recipe.quantization
    return ArtifactInfo(out.name, "onnx", quantization={
        "tool": "nncf.quantize_with_accuracy_control", "format": "QDQ", "preset": q.preset_for(ctx.profile),
        "weight_bits": ctx.profile.weight_bits,
        "calibration_images": len(ctx.calibration_feeds),
        "float_layers": _float_weight_nodes(quantized),
    }, toolchain={"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "nncf": nncf.__version__})


def _float_weight_nodes(model) -> list[str]:
    """Conv / Gemm / MatMul nodes whose weight does not come out of a DequantizeLinear."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] not in dequantized]
