"""intel-npu target: OpenVINO IR with static shapes; INT8 through NNCF post-training quantization.

The NPU compiler needs static shapes, which the ONNX graph already has. Runtime falls back to the CPU plugin
when no NPU is present, so the same IR is checked on any x86 host.
"""

from __future__ import annotations

from edgevision.export.base import ArtifactInfo, ExportContext, quiet_progress

# ONNX op type -> OpenVINO op type names, for the recipe's ignored_types.
_OV_TYPES = {"Softmax": ["Softmax", "SoftMax"], "Sigmoid": ["Sigmoid"], "Resize": ["Interpolate"]}


def export_artifact(ctx: ExportContext) -> ArtifactInfo:
    import openvino as ov

    model = ov.convert_model(str(ctx.onnx_fp32))
    xml = ctx.workdir / "model.xml"
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
    types = [t for name in q.ignored_types for t in _OV_TYPES.get(name, [name])]
    scope = nncf.IgnoredScope(types=types, names=list(q.ignored_names), validate=False)
    preset = nncf.QuantizationPreset.MIXED if q.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    batches = ctx.calibration.batches
    with quiet_progress():
        quantized = nncf.quantize(model, nncf.Dataset(batches), preset=preset,
                                  subset_size=min(q.subset_size, len(batches)), ignored_scope=scope)
    info = {"tool": "nncf", "preset": q.preset, "calibration_images": min(q.subset_size, len(batches)),
            "ignored_types": types, "ignored_names": list(q.ignored_names)}
    return quantized, info, nncf.__version__
