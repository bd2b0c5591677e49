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


# The histogram calibrators (percentile, entropy) keep every calibrated tensor of every image until they build
# their histograms: 576 MB an image for a ViT-T encoder at 1024, so about 36 GB for 64 images. Above
# this much (EDGEVISION_CALIBRATION_HOLD_MB), the images go through in chunks whose histograms ONNX Runtime merges.
CALIBRATION_HOLD_MB = 2048
_HISTOGRAM_METHODS = ("percentile", "entropy")


def calibrated_bytes_per_image(model, op_types: list[str] | None) -> int:
    """Bytes of float activations ONNX Runtime's histogram calibrator keeps for one image.

    Mirrors its choice of tensors: the float, non-constant inputs and outputs of the nodes of ``op_types``
    (None: every op type its quantizer knows). Shapes come from the pre-processed model's shape inference; a
    tensor whose shape is not static counts as empty.
    """
    import numpy as np
    from onnx import TensorProto, helper
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    kinds = set(op_types) if op_types else set(QLinearOpsRegistry) | set(QDQRegistry)
    infos = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    constants = {i.name for i in model.graph.initializer}
    names = {t for n in model.graph.node if n.op_type in kinds for t in [*n.input, *n.output]
             if t in infos and t not in constants}
    total = 0
    for name in names:
        tensor_type = infos[name].type.tensor_type
        if tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor_type.shape.dim]
        total += int(np.prod(dims)) * np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
    return total


def calibration_hold_bytes() -> int:
    """The most a histogram calibrator may hold at once: EDGEVISION_CALIBRATION_HOLD_MB, or 2048 MB."""
    import os

    value = os.environ.get("EDGEVISION_CALIBRATION_HOLD_MB", "").strip() or str(CALIBRATION_HOLD_MB)
    try:
        mb = float(value)
    except ValueError:
        mb = 0
    if not mb > 0:
        raise BadInput(f"EDGEVISION_CALIBRATION_HOLD_MB={value!r}: give the calibration's memory limit in MB, "
                       f"more than 0 (default {CALIBRATION_HOLD_MB})")
    return max(1, int(mb * 1024 * 1024))


def calibration_chunk(images: int, bytes_per_image: int, hold_bytes: int) -> int | None:
    """Images per chunk so a histogram calibrator holds at most ``hold_bytes``; None when all of them fit.

    ONNX Runtime's chunked collection needs a chunk that divides the image count, so this is the largest divisor
    of ``images`` that fits (at least 1).
    """
    if images < 1 or bytes_per_image < 0 or hold_bytes < 1:
        raise ValueError(f"images={images}, bytes_per_image={bytes_per_image}, hold_bytes={hold_bytes}")
    if images * bytes_per_image <= hold_bytes:
        return None
    fits = max(1, hold_bytes // max(bytes_per_image, 1))
    return max(d for d in range(1, min(fits, images) + 1) if images % d == 0)


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

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(feeds[start_index:end_index])

    method = calibration_method or ctx.recipe.quantization.method_for(ctx.profile.family)
    calibrate_method, calibration_options = _ort_calibration(method)
    chunk, held = None, {}
    if method in _HISTOGRAM_METHODS:
        per_image = calibrated_bytes_per_image(model, op_types)
        chunk = calibration_chunk(len(feeds), per_image, calibration_hold_bytes())
        held = {"calibration_mb_per_image": round(per_image / 2**20, 1)}
        if chunk:
            calibration_options["CalibStridedMinMax"] = chunk  # despite the name, any calibrator: merged histograms
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
        "calibration_method": method, **held, **({"calibration_chunk": chunk} if chunk else {}),
        "activations": "int8 symmetric" if symmetric_activations else "uint8 asymmetric",
        "weights": "int8 symmetric per-channel" + (", 7-bit range -64..64" if seven_bit else ""),
        "weight_bits": ctx.profile.weight_bits, "bias": "int32" if quantize_bias else "float",
        "float_nodes": excluded,
        **({"quantized_op_types": op_types} if op_types else {}),
        **({"output_quantization": "none (inputs of the quantized ops only)"} if inputs_only else {}),
    }, toolchain={"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__})
