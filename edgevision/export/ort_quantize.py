"""Static QDQ INT8 with ONNX Runtime's own quantizer: the cpu and jetson targets' quantization step."""

from __future__ import annotations

from edgevision.errors import BadInput

from edgevision.export.base import ArtifactInfo, ExportContext
from edgevision.export.onnx_graph import (ensure_node_names, input_stem_nodes, module_scope_nodes, simplify_input_stem,
                                         tail_nodes)


def _ort_calibration(name: str) -> tuple[object, dict]:
    """ONNX Runtime's calibration method and extra options for a recipe's ``calibration_method``."""
    from onnxruntime.quantization import CalibrationMethod

    if name == "mean-minmax":
        return CalibrationMethod.MinMax, {"CalibMovingAverage": True}
    if name == "histogram":
        raise BadInput("calibration_method histogram is PT2E's observer (the rpi target); for cpu and jetson pick "
                       "mean-minmax, minmax, percentile or entropy")
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name], {}


def quantize_qdq(ctx: ExportContext, out, *, symmetric_activations: bool,
                 op_types: list[str] | None = None, quantize_bias: bool = True,
                 calibration_method: str | None = None) -> ArtifactInfo:
    """Static QDQ INT8 with ONNX Runtime's quantizer; per-channel int8 weights.

    ``op_types`` limits which ops get Q/DQ (None: every op ONNX Runtime can quantize). ``quantize_bias=False``
    keeps biases float (TensorRT's parser rejects a DequantizeLinear of an int32 bias). ``calibration_method``
    overrides the recipe's for this target (a proxy of another target's scheme).
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = ctx.workdir / ".pre.onnx"
    named = ctx.workdir / ".named.onnx"
    model = onnx.load(str(ctx.onnx_fp32))
    ensure_node_names(model)
    onnx.save(model, str(named))
    quant_pre_process(str(named), str(pre), skip_symbolic_shape=True)
    scopes = {n.name: list(n.metadata_props) for n in model.graph.node}
    model = onnx.load(str(pre))
    ensure_node_names(model)
    for n in model.graph.node:  # the pre-processing drops the PyTorch module scopes that rpi's ranking reads
        origin = scopes.get(n.name) or scopes.get(n.name.split("/")[0])  # fused: "<first node>/MatMulAddFusion"
        if not n.metadata_props and origin:
            n.metadata_props.extend(origin)
    simplify_input_stem(model)
    onnx.save(model, str(pre))
    excluded = input_stem_nodes(model) + tail_nodes(model, ctx.recipe.quantization.ignored_types)
    by_name = ctx.recipe.quantization.ignored_names_for(ctx.profile.family) + ctx.options.get("exclude", [])
    in_modules = module_scope_nodes(model, by_name)  # a name may be a PyTorch module: all of its nodes
    excluded += [n for n in by_name + in_modules if n not in excluded]
    feeds = ctx.calibration_feeds  # keyed by the graph's input names, which the ONNX graph carries

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    method = calibration_method or ctx.recipe.quantization.method_for(ctx.profile.family)
    calibrate_method, calibration_options = _ort_calibration(method)
    seven_bit = ctx.profile.weight_bits == 7
    # A transformer's matmuls get Q/DQ on their inputs only: a quantized output would put the attention logits
    # through int8 on their way into Softmax (and the MLP's into GELU), which TensorRT and the budget want float.
    inputs_only = op_types if ctx.recipe.quantization.model_type == "transformer" and op_types else []
    quantize_static(
        str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        calibrate_method=calibrate_method, reduce_range=seven_bit,
        activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
        weight_type=QuantType.QInt8, nodes_to_exclude=excluded, op_types_to_quantize=op_types,
        extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True,
                       "QuantizeBias": quantize_bias, "OpTypesToExcludeOutputQuantization": inputs_only,
                       **calibration_options},
    )
    pre.unlink(missing_ok=True)
    named.unlink(missing_ok=True)
    return ArtifactInfo(out.name, "onnx", quantization={
        "tool": "onnxruntime.quantization", "format": "QDQ", "calibration_images": len(feeds),
        "calibration_method": method,
        "activations": "int8 symmetric" if symmetric_activations else "uint8 asymmetric",
        "weights": "int8 symmetric per-channel" + (", 7-bit range -64..64" if seven_bit else ""),
        "weight_bits": ctx.profile.weight_bits, "bias": "int32" if quantize_bias else "float",
        "float_nodes": excluded,
        **({"quantized_op_types": op_types} if op_types else {}),
        **({"output_quantization": "none (inputs of the quantized ops only)"} if inputs_only else {}),
    }, toolchain={"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__})
