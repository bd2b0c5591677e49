"""intel-npu target: OpenVINO IR with static shapes; INT8 through NNCF post-training quantization.

The NPU compiler needs static shapes, which the ONNX graph already has. Runtime falls back to the CPU plugin
when no NPU is present, so the same IR is checked on any x86 host.
"""

from __future__ import annotations

from edgevision.export.base import ArtifactInfo, ExportContext, quiet_progress
from edgevision.export.nncf_quantize import (nncf_accuracy_control, nncf_advanced_parameters, nncf_model_type,
                                             nncf_preset, openvino_ignored_names, openvino_ignored_types,
                                             openvino_module_names)


def export_artifact(ctx: ExportContext) -> ArtifactInfo:
    import openvino as ov

    model = ov.convert_model(str(ctx.onnx_fp32))
    xml = ctx.workdir / f"{ctx.name}.xml"
    quantization = None
    toolchain = {"openvino": ov.get_version()}
    if ctx.precision == "int8":
        model, quantization, version = quantize_nncf(model, ctx)
        toolchain["nncf"] = version
    ov.save_model(model, str(xml), compress_to_fp16=(ctx.precision == "fp16"))
    return ArtifactInfo(xml.name, "openvino-ir", quantization=quantization, toolchain=toolchain)


def quantize_nncf(model, ctx: ExportContext):
    import logging

    import nncf  # imported here: it costs ~2 s

    nncf.set_log_level(logging.ERROR)

    q = ctx.recipe.quantization
    control = ctx.options.get("accuracy_control")
    if control:

        with quiet_progress():
            quantized = nncf_accuracy_control(model, ctx, control["eval_set"], control["io"], control["metric"],
                                              control["max_drop"], max_layers=control["max_layers"])
        info = {"tool": "nncf.quantize_with_accuracy_control", "preset": q.preset_for(ctx.profile),
                "weight_bits": ctx.profile.weight_bits,
                "calibration_images": len(ctx.calibration_feeds),
                "float_layers": _float_ops(quantized)}
        return quantized, info, nncf.__version__
    types = openvino_ignored_types(q)
    names = openvino_module_names(ctx.onnx_fp32, q.ignored_names_for(ctx.profile.family)
                                  + list(ctx.options.get("exclude", [])))
    names += openvino_ignored_names(model, q)
    scope = nncf.IgnoredScope(types=types, names=names, validate=False)
    feeds = ctx.calibration_feeds  # dicts keyed by input name, as OpenVINO's compiled model takes them
    with quiet_progress():
        quantized = nncf.quantize(model, nncf.Dataset(feeds), preset=nncf_preset(ctx), model_type=nncf_model_type(ctx),
                                  subset_size=len(feeds), ignored_scope=scope,
                                  advanced_parameters=nncf_advanced_parameters(ctx))
    info = {"tool": "nncf", "preset": q.preset_for(ctx.profile), "weight_bits": ctx.profile.weight_bits,
            "model_type": q.model_type, "smooth_quant_alpha": q.smooth_quant_alpha,
            "calibration_images": len(feeds), "ignored_types": types, "ignored_names": names}
    return quantized, info, nncf.__version__


def _float_ops(model) -> list[str]:
    """Convolutions / matmuls whose weights are float: their weight path holds neither a FakeQuantize nor a
    compressed int8 constant (Constant(i8/u8) -> Convert -> [Subtract] -> Multiply). The activation side cannot
    tell: NNCF puts the FakeQuantize above a max-pool, so a quantized conv may read a MaxPool output."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        node, quantized = op.input_value(1).get_node(), False
        for _ in range(6):
            kind = node.get_type_name()
            if kind == "FakeQuantize" or (kind == "Constant" and node.get_element_type().bitwidth <= 8):
                quantized = True
                break
            if node.get_input_size() == 0:
                break
            node = node.input_value(0).get_node()
        if not quantized:
            out.append(op.get_friendly_name())
    return out
