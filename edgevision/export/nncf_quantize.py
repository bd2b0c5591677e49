"""NNCF's side of INT8: presets and parameters from the target profile, and accuracy-controlled quantization
with edgevision's metric, for an OpenVINO model (intel-npu) or an ONNX model (cpu)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgevision.bundle import IMAGE
from edgevision.check.evaluate import ModelIO
from edgevision.data.datasets import EvalSet
from edgevision.export.accuracy_control import DEFAULT_MAX_FLOAT_LAYERS, primary_metric
from edgevision.export.base import ExportContext

# ONNX op type -> OpenVINO op type names, for the recipe's ignored_types.
_OV_TYPES = {"Softmax": ["Softmax", "SoftMax"], "Sigmoid": ["Sigmoid"], "Resize": ["Interpolate"]}


def nncf_preset(ctx: ExportContext):
    """NNCF's preset for this export: the recipe's ``preset``, else the target profile's ``nncf_preset``."""
    import nncf

    name = ctx.recipe.quantization.preset_for(ctx.profile)
    return nncf.QuantizationPreset.MIXED if name == "mixed" else nncf.QuantizationPreset.PERFORMANCE


def nncf_advanced_parameters(ctx: ExportContext):
    """NNCF's overflow fix from the profile's ``weight_bits``: 7 halves every weight's range (ENABLE), so that
    x86 CPUs without VNNI, whose u8 x s8 kernels add pairs of products in 16 bits, cannot saturate and compute
    what VNNI CPUs and the NPU compute; 8 keeps NNCF's default (first layer only). The recipe's SmoothQuant
    alpha, and its calibration method when it is ``minmax`` (the extremes of every calibration image, not
    NNCF's averaged ranges)."""
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                       AdvancedSmoothQuantParameters, OverflowFix)
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    kwargs = {"overflow_fix": OverflowFix.ENABLE if ctx.profile.weight_bits == 7 else OverflowFix.FIRST_LAYER}
    alpha = ctx.recipe.quantization.smooth_quant_alpha
    if alpha is not None:
        kwargs["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=alpha)
    if ctx.recipe.quantization.method_for(ctx.profile.family) == "minmax":
        kwargs["activations_range_estimator_params"] = RangeEstimatorParametersSet.MINMAX
    return AdvancedQuantizationParameters(**kwargs)


def nncf_model_type(ctx: ExportContext):
    """NNCF's ModelType for the recipe (None for CNNs)."""
    import nncf

    return nncf.ModelType.TRANSFORMER if ctx.recipe.quantization.model_type == "transformer" else None


# What a recipe's ONNX op_types leave out, in OpenVINO terms: no "Conv" -> convolutions float; no "MatMul" ->
# attention float ("Gemm" alone means the linear layers: ONNX Runtime's pre-processing fuses MatMul+Add into
# Gemm, and OpenVINO fuses attention into ScaledDotProductAttention); neither "MatMul" nor "Gemm" -> every MatMul.
_OV_CONV = ["Convolution", "GroupConvolution"]
_OV_ATTENTION = ["ScaledDotProductAttention"]


def openvino_ignored_types(quantization) -> list[str]:
    """The recipe's ``ignored_types`` as OpenVINO op type names, plus the op types that the recipe's ``op_types``
    for intel-npu leave out (NNCF has no allow-list, only an ignored scope). Attention written as plain
    MatMuls is left out by name: ``activation_matmuls``."""
    types = [t for name in quantization.ignored_types for t in _OV_TYPES.get(name, [name])]
    listed = quantization.op_types_for("intel-npu")
    if listed is not None:
        left_out = ([] if "Conv" in listed else _OV_CONV) + ([] if "MatMul" in listed else _OV_ATTENTION) + \
            ([] if {"MatMul", "Gemm"} & set(listed) else ["MatMul"])
        types += [t for t in left_out if t not in types]
    return types


def openvino_ignored_names(model, quantization) -> list[str]:
    """The OpenVINO MatMuls of two activations (attention not fused into ScaledDotProductAttention), when the
    recipe's ``op_types`` for intel-npu list linear layers (Gemm) but not MatMul."""
    listed = quantization.op_types_for("intel-npu")
    if listed is None or "MatMul" in listed or "Gemm" not in listed:
        return []
    return activation_matmuls(model)


def openvino_module_names(onnx_path, names: list[str]) -> list[str]:
    """``names`` plus, for each that is a PyTorch module path ("model.model.image_encoder.blocks.0"), the ONNX
    nodes traced inside it. OpenVINO keeps an ONNX node's name as its op's friendly name, which NNCF's ignored
    scope matches, so one recipe name keeps the same block float on intel-npu as on cpu, jetson and rpi."""
    import onnx

    from edgevision.export.onnx_graph import module_scope_nodes

    if not names:
        return []
    in_modules = module_scope_nodes(onnx.load(str(onnx_path), load_external_data=False), names)
    return list(names) + [n for n in in_modules if n not in names]


def activation_matmuls(model) -> list[str]:
    """Friendly names of the MatMuls of an ov.Model with no constant operand (through weight decompression
    and reshapes)."""
    passthrough = {"Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze", "FakeQuantize"}

    def constant(node, depth: int = 0) -> bool:
        if node.get_type_name() == "Constant":
            return True
        return (depth < 5 and node.get_type_name() in passthrough and node.get_input_size() > 0
                and constant(node.input_value(0).get_node(), depth + 1))

    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"
            and not any(constant(op.input_value(i).get_node()) for i in range(2))]


def nncf_accuracy_control(model, ctx, eval_set: EvalSet, io: ModelIO, metric: str, max_drop: float, *,
                          backend: str = "openvino", max_layers: int = DEFAULT_MAX_FLOAT_LAYERS):
    """nncf.quantize_with_accuracy_control with edgevision's metric as the validation function, for an
    OpenVINO model (intel-npu) or an ONNX model (cpu).

    NNCF hands the validation function the model to run (an OpenVINO CompiledModel, or an ONNX ModelProto)
    and raw items of the validation dataset, sometimes all of them and sometimes one at a time (to rank which
    images change most), and expects ``(metric, per-item values)`` back. So the items are eval-set indices (the
    dataset's transform turns an index into the network input), and the metric is computed on exactly the
    images NNCF asked for. ``max_layers`` caps NNCF's iterations, each of which reverts one more group of
    quantizers to float (one or more layers); the caller counts the float layers of the result against the
    same limit. ``model_type`` is the recipe's, as for plain INT8: without TRANSFORMER a ViT loses most of its
    logit cosine.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from edgevision.ops.preprocess import prepare

    q = ctx.recipe.quantization
    ignored_names = q.ignored_names_for(ctx.profile.family)
    if backend == "openvino":
        types = openvino_ignored_types(q)
        ignored_names = openvino_module_names(ctx.onnx_fp32, ignored_names) + openvino_ignored_names(model, q)
    else:
        types = list(q.ignored_types)
    inputs = [{IMAGE: np.ascontiguousarray(prepare(s.image, io.imgsz, io.resize)[0][None])} for s in eval_set.samples]
    sessions: dict[int, tuple[object, Callable]] = {}

    def runner_for(model_for_inference) -> Callable[[dict], dict]:
        """``f(feeds by input name) -> outputs by name`` over the model NNCF hands over."""
        if backend == "openvino":
            outputs = {o.get_any_name(): o for o in model_for_inference.outputs}

            def run(feeds):
                res = model_for_inference(feeds)
                return {name: np.asarray(res[o]) for name, o in outputs.items()}

            return run
        # ONNX: one ORT session per model NNCF hands over (it validates each model many times); the model is
        # kept referenced so that its id is not reused while cached
        key = id(model_for_inference)
        if key not in sessions:
            import onnxruntime as ort

            from edgevision.runtime.base import thread_cap

            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = min(2, thread_cap()), 1, 3
            sess = ort.InferenceSession(model_for_inference.SerializeToString(), opts,
                                        providers=["CPUExecutionProvider"])
            names = [o.name for o in sess.get_outputs()]
            if len(sessions) >= 4:
                sessions.pop(next(iter(sessions)))
            sessions[key] = (model_for_inference, lambda feeds: dict(zip(names, sess.run(names, feeds))))
        return sessions[key][1]

    def validate(model_for_inference, indices) -> tuple[float, None]:
        run = runner_for(model_for_inference)
        chosen = [int(i) for i in indices]
        subset = EvalSet(eval_set.description, [eval_set.samples[i] for i in chosen], eval_set.labelled)
        value = primary_metric(run, subset, io, metric)
        # One image without objects of a class gives COCOeval's -1 or NaN; for NNCF's per-image ranking that
        # image simply carries no information.
        return (value if np.isfinite(value) and value >= 0 else 0.0), None

    calibration = ctx.calibration_feeds
    calibration_dataset = nncf.Dataset(calibration)
    validation_dataset = nncf.Dataset(list(range(len(inputs))), lambda i: inputs[i])
    return nncf.quantize_with_accuracy_control(
        model, calibration_dataset, validation_dataset,
        validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf_preset(ctx), model_type=nncf_model_type(ctx),
        subset_size=min(q.subset_size, len(calibration)),
        ignored_scope=nncf.IgnoredScope(types=types, names=ignored_names, validate=False),
        advanced_quantization_parameters=nncf_advanced_parameters(ctx),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(max_num_iterations=max_layers))
