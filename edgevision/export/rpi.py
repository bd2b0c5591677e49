"""rpi target: a LiteRT flatbuffer (.tflite) for the XNNPACK delegate, converted with litert-torch.

* fp32: the uint8-input graph as is.
* fp16: fp32 conversion, then ai-edge-quantizer's float casting of conv/linear weights (fp16 weights that
  XNNPACK dequantizes once at load).
* int8: full-int8 through PT2E: symmetric per-channel int8 weights, int8 activations calibrated on the
  calibration set, converted by litert-torch. Only the graph input (quantized pixels) and the ops the PT2E
  quantizer does not annotate (the detection head's Sigmoid/Softmax tail) stay outside int8; the bundle
  lists every float op. A recipe's op_types (ONNX names, as on cpu and jetson) narrow int8 to those ops: a
  ViT keeps its residual stream, LayerNorms and softmax in float, and XNNPACK runs its Linears in int8.
"""

from __future__ import annotations

from collections.abc import Callable

import re
import shutil
from pathlib import Path

import numpy as np

from edgevision.errors import BadInput, EdgevisionError, MissingDependency
from edgevision.export.base import ArtifactInfo, ExportContext, quiet_progress
from edgevision.quiet import native_output_silenced


def _litert_torch():
    try:
        import litert_torch
    except ImportError:
        raise MissingDependency("litert_torch", "rpi-export", "exporting for the rpi target") from None
    return litert_torch


def export_artifact(ctx: ExportContext) -> ArtifactInfo:
    # litert-torch, torchao, absl and TFLite print about a dozen lines straight to stderr; --debug shows them
    with native_output_silenced():
        return _export_artifact(ctx)


def _export_artifact(ctx: ExportContext) -> ArtifactInfo:
    litert_torch = _litert_torch()
    out = ctx.workdir / f"{ctx.name}.tflite"
    example = ctx.graph.example()
    quantization = None
    if ctx.precision == "int8":
        quantization = _convert_int8(ctx, out)
    else:
        _convert(litert_torch, ctx.wrapper, example, out)
        if ctx.precision == "fp16":
            quantization = _cast_weights_fp16(out)
    io, float_ops = inspect_tflite(out)
    if ctx.precision == "int8":
        quantization["float_ops"] = float_ops  # what stays outside int8, for the record
    quantization = {**(quantization or {}), "xnnpack": xnnpack_report(out)}
    import torchao

    return ArtifactInfo(out.name, "tflite", quantization=quantization, io=io,
                        toolchain={"litert_torch": litert_torch.__version__, "torchao": torchao.__version__})


def _convert(litert_torch, module, args, out: Path, **kw) -> None:
    try:
        with quiet_progress():
            model = litert_torch.convert(module, args, **kw)
            model.export(str(out))
    except Exception as e:  # the converter raises many types; name the op when it tells us
        raise unsupported_op_error(e, "rpi", lambda: _ops_without_lowering(module, args)) from e


def _ops_without_lowering(module, args) -> list[str]:
    """ATen ops of the graph that litert-torch has no lowering for, after PyTorch's core decompositions.
    Some converter failures (e.g. aten.linalg_inv_ex inside its own decompositions) never name the op."""
    import torch
    from litert_torch.backend import lowerings

    program = torch.export.export(module, args).run_decompositions()
    ops = {n.target for n in program.graph.nodes if n.op == "call_function" and hasattr(n.target, "_schema")}
    return sorted(str(op) for op in ops if str(op).startswith("aten.") and lowerings.lookup(op) is None)


def unsupported_op_error(e: Exception, target: str, find_ops: Callable[[], list[str]] | None = None) -> Exception:
    text = str(e)
    op = re.search(r"(aten[.:]+[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)", text)
    ops = [op.group(1)] if op else []
    if not ops and find_ops is not None:
        try:
            ops = find_ops()
        except Exception:  # best effort: the original failure is what gets reported
            ops = []
    if ops:
        return BadInput(f"op {', '.join(ops)} cannot be converted for the {target} target; "
                        f"try --precision fp16, or --target cpu")
    # No op of the user's model to blame: a fault of the converter or of edgevision itself, not of the input.
    first = (text.strip().splitlines() or [type(e).__name__])[0][:200]
    return EdgevisionError(f"the {target} converter failed ({type(e).__name__}: {first}); this is a bug in "
                           f"edgevision or the converter, not in your model: run with --debug and report it")


def _convert_int8(ctx: ExportContext, out: Path) -> dict:
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    litert_torch = _litert_torch()
    # PT2E quantizes the graph inputs too, so the traced graph takes float pixels (0-255); the runtime feeds
    # them through the input's int8 scale and zero point recorded in the bundle.
    example = tuple(x.float() for x in ctx.graph.example())
    ignored = set(ctx.recipe.quantization.ignored_names_for("rpi")) | set(ctx.options.get("exclude", []))
    batches = ctx.calibration_feeds
    inputs = [tuple(torch.from_numpy(feed[t.name]).float() for t in ctx.graph.inputs) for feed in batches]
    with torch.no_grad():
        graph = torch.export.export(ctx.wrapper, example).module()
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    minmax = ctx.recipe.quantization.method_for(ctx.profile.family) == "minmax"
    if minmax:
        config = _with_minmax_activations(config)
    op_types = ctx.recipe.quantization.op_types_for("rpi")
    quantizer = _quantizer_keeping_float(pt2e_quantizer.PT2EQuantizer, ignored,
                                         _aten_ops(op_types) if op_types else None).set_global(config)
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for args in inputs:
            prepared(*args)
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    _convert(litert_torch, converted, example, out, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    return {"tool": "litert-torch PT2E", "weights": "int8 symmetric per-channel",
            "activations": "int8" + (", min/max ranges" if minmax else ", histogram ranges"),
            "op_types": op_types, "calibration_images": len(batches), "ignored_names": sorted(ignored)}


# The recipe names op types as ONNX does (cpu, jetson); these are the traced ATen ops each one stands for.
ATEN_OPS = {
    "Conv": {"conv1d", "conv2d", "conv_transpose2d"},
    "Gemm": {"linear", "addmm"},
    "MatMul": {"matmul", "bmm", "mm"},
}


def _aten_ops(op_types: list[str]) -> set[str]:
    unknown = sorted(set(op_types) - set(ATEN_OPS))
    if unknown:
        raise BadInput(f"recipe op_types {', '.join(unknown)}: the rpi target can restrict int8 to "
                       f"{', '.join(ATEN_OPS)} only; drop the others or name them in target_op_types for cpu/jetson")
    return set().union(*(ATEN_OPS[t] for t in op_types))


def _with_minmax_activations(config):
    """PT2E's config with min/max activation observers in place of its histogram observers (the recipe's
    calibration_method minmax; any other method keeps PT2E's histogram observers)."""
    import dataclasses

    from torchao.quantization.pt2e.observer import MinMaxObserver

    spec = dataclasses.replace(config.input_activation,
                               observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return config._replace(input_activation=spec, output_activation=spec) if hasattr(config, "_replace") else \
        dataclasses.replace(config, input_activation=spec, output_activation=spec)


def _module_paths(node) -> set[str]:
    """The dotted PyTorch module paths a traced node came from ("model.features.5", ...)."""
    paths = set()
    for key, value in node.meta.get("nn_module_stack", {}).items():
        path = value[0] if isinstance(value, tuple) else key
        for prefix in ("L['self'].", "L__self__"):
            if path.startswith(prefix):
                path = path[len(prefix):]
        paths.add(path)
    return paths


def _quantizer_keeping_float(base, float_modules: set[str], only_ops: set[str] | None = None):
    """litert-torch's PT2E quantizer, minus the modules to keep in float (its own set_module_name(name, None)
    is not supported) and, given ``only_ops``, minus every op not in it (ATen names: "linear", "conv2d"): those
    nodes lose their quantization annotations before observers are inserted. A kept op's int8 input is then
    quantized from the float op before it, and its int8 output dequantized for the float op after it."""

    class Quantizer(base):
        def annotate(self, model):
            model = super().annotate(model)
            for node in model.graph.nodes:
                if (float_modules and _module_paths(node) & float_modules) or \
                        (only_ops is not None and node.op == "call_function" and _aten_name(node) not in only_ops):
                    node.meta.pop("quantization_annotation", None)
                else:
                    _drop_integer_annotations(node, model)
            return model

    return Quantizer()


def _aten_name(node) -> str:
    """aten.linear.default -> "linear"."""
    name = getattr(node.target, "__name__", str(node.target))
    return name.split(".")[0]


def _is_float(node, model) -> bool:
    if not hasattr(node, "meta"):
        return True
    value = node.meta.get("val")
    if value is None and node.op == "get_attr":  # a constant of the traced graph
        value = model
        for part in str(node.target).split("."):
            value = getattr(value, part, None)
    return value is None or not hasattr(value, "dtype") or value.dtype.is_floating_point


def _drop_integer_annotations(node, model) -> None:
    """Integer and boolean tensors (a prompt-label comparison's constant, a mask) get no observer: the quantizer
    annotates by op, and a histogram of an int64 tensor fails."""
    annotation = node.meta.get("quantization_annotation")
    if annotation is None:
        return
    for inp in [i for i in annotation.input_qspec_map if not _is_float(i, model)]:
        del annotation.input_qspec_map[inp]
    if not _is_float(node, model):
        annotation.output_qspec = None


def _cast_weights_fp16(path: Path) -> dict:
    try:
        from ai_edge_quantizer import quantizer as aeq
        from ai_edge_quantizer import qtyping
    except ImportError:
        raise MissingDependency("ai_edge_quantizer", "rpi-export", "fp16 LiteRT export") from None
    q = aeq.Quantizer(str(path))
    ops = [qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
           qtyping.TFLOperationName.FULLY_CONNECTED, qtyping.TFLOperationName.CONV_2D_TRANSPOSE]
    for op in ops:
        q.add_weight_only_config(".*", op, 16, algorithm_key="float_casting")
    tmp = path.with_suffix(".fp16.tflite")
    with quiet_progress():
        q.quantize(enable_progress_report=False).export_model(str(tmp), overwrite=True)
    shutil.move(tmp, path)
    return {"tool": "ai-edge-quantizer float_casting", "weights": "fp16", "activations": "fp32"}


def xnnpack_report(path: Path) -> dict:
    """XNNPACK's delegation of the artifact, with and without its latest-operators flag; the runner turns the
    flag on when it delegates more (``latest_features``)."""
    from edgevision.runtime.litert import xnnpack_delegation

    default, latest = xnnpack_delegation(path), xnnpack_delegation(path, latest_features=True)
    use_latest = latest["delegated"] > default["delegated"]
    return {**(latest if use_latest else default), "latest_features": use_latest,
            "delegated_without_latest_features": default["delegated"]}


def inspect_tflite(path: Path) -> tuple[dict, list[str]]:
    """The artifact's I/O contract (dtype, quantization, layout), its tensor names in the order the converter
    took the graph's inputs and outputs (its signature), and the ops computing in float."""
    from edgevision.runtime.litert import load_interpreter_class, signature_order

    interp = load_interpreter_class()(model_path=str(path))
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}

    def desc(d):
        scale, zero = d["quantization"]
        shape = [int(v) for v in d["shape"]]
        layout = {"layout": "NHWC" if shape[-1] == 3 else "NCHW"} if len(shape) == 4 and 3 in shape[1:] else {}
        return {"name": d["name"], "shape": shape, "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scale), "zero_point": int(zero), **layout}

    inputs, outputs = signature_order(interp)
    float_ops = []
    for op in interp._get_ops_details():
        if op["op_name"] in ("DEQUANTIZE", "QUANTIZE", "DELEGATE"):
            continue
        ins = [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors]
        if any(np.dtype(t["dtype"]) == np.float32 for t in ins):
            float_ops.append(op["op_name"])
    return {"inputs": [desc(d) for d in inputs], "outputs": [desc(d) for d in outputs],
            "names": {"inputs": [d["name"] for d in inputs], "outputs": [d["name"] for d in outputs]}}, sorted(set(float_ops))
