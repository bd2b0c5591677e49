"""Facts about an ONNX graph that export and check both need. Neutral: imports neither export/ nor check/."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def count_macs(model_or_path) -> int:
    """Multiply-accumulates of one forward pass: Conv, ConvTranspose, MatMul and Gemm, from the graph's
    inferred static shapes (elementwise ops, pooling and the like are not counted). 0 for dynamic shapes."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    model = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in info.type.tensor_type.shape.dim]
        shapes[info.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)

    total = 0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1], [])
            if node.op_type == "Conv":
                out = shapes.get(node.output[0], [])
                # out elements x (in channels per group x kernel area): w is (Cout, Cin/g, kh, kw)
                total += _prod(out) * _prod(w[1:])
            else:
                x = shapes.get(node.input[0], [])
                # every input element meets (Cout/g x kernel area) weights: w is (Cin, Cout/g, kh, kw)
                total += _prod(x) * _prod(w[1:])
        elif node.op_type == "MatMul":
            a, out = shapes.get(node.input[0], []), shapes.get(node.output[0], [])
            total += _prod(out) * (a[-1] if a else 0)
        elif node.op_type == "Gemm":
            a, out = shapes.get(node.input[0], []), shapes.get(node.output[0], [])
            k = (a[0] if attrs.get("transA") else a[-1]) if len(a) == 2 else 0
            total += _prod(out) * k
    return int(total)


def _prod(dims: list[int]) -> int:
    return int(np.prod(dims)) if dims and all(d > 0 for d in dims) else 0
