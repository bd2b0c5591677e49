"""jetson target: ONNX that TensorRT 10 consumes on the device (`edgevision build-engine`).

* fp32: the uint8-input ONNX graph.
* fp16: the same graph with fp16 weights and math, uint8 input and float32 outputs kept.
* int8: explicit quantization (QDQ) in TensorRT's form: symmetric int8 activations and weights (all zero
  points 0), per-channel weights, Q/DQ only in front of the layers TensorRT runs in INT8 (convolutions,
  matmuls, pooling, residual adds); the detection head's float tail and other ops TensorRT keeps in float get
  none. On the host the same file is checked with ONNX Runtime, whose QDQ numerics stand in for TensorRT's.
"""

from __future__ import annotations

import shutil

from edgevision.export.base import ArtifactInfo, ExportContext
from edgevision.export.ort_quantize import quantize_qdq

# Ops that get Q/DQ on their inputs; everything else runs in float (or in whatever precision TensorRT fuses).
TENSORRT_INT8_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm", "MaxPool", "AveragePool", "GlobalAveragePool",
                     "Add"]


def export_artifact(ctx: ExportContext) -> ArtifactInfo:
    out = ctx.workdir / f"{ctx.name}.onnx"
    if ctx.precision == "fp32":
        shutil.copyfile(ctx.onnx_fp32, out)
        return ArtifactInfo(out.name, "onnx")
    if ctx.precision == "fp16":
        return _to_fp16(ctx, out)
    # Biases stay float: TensorRT's ONNX parser refuses DequantizeLinear on int32 ("only activation types
    # allowed as input to this layer") and folds the float bias into its INT8 kernels itself.
    op_types = ctx.recipe.quantization.op_types_for("jetson") or TENSORRT_INT8_OPS
    return quantize_qdq(ctx, out, symmetric_activations=True, op_types=op_types, quantize_bias=False)


def _to_fp16(ctx: ExportContext, out) -> ArtifactInfo:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(ctx.onnx_fp32))
    # The input stays uint8 and the outputs float32; the normalisation and the decode's inputs keep fp32.
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=["Sigmoid", "Softmax", "Cast"])
    onnx.save(half, str(out))
    return ArtifactInfo(out.name, "onnx", quantization={"tool": "onnxruntime float16", "weights": "fp16",
                                                        "activations": "fp16"})
