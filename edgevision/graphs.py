"""ONNX graph work that export and check both need: the PyTorch -> ONNX step and facts about a graph.
Neutral: imports neither export/ nor check/ (check builds FP32 reference graphs for per-layer comparisons)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError

OPSET = 18


def export_onnx(module, path: Path, *, inputs: list, output_names: list[str], dynamic_batch: bool = False) -> None:
    """Export ``module`` with ``torch.onnx.export(dynamo=True)``; its named ``inputs`` (TensorSpecs, in the
    order ``forward`` takes them) become the graph's inputs. Static shapes by default."""
    import torch

    # torch.export specialises a size-1 dimension, so a dynamic batch is traced with 2
    example = tuple(torch.zeros([2 if dynamic_batch else 1, *t.shape[1:]], dtype=getattr(torch, t.dtype))
                    for t in inputs)
    names = [t.name for t in inputs]
    dynamic = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=64)
        dynamic = tuple({0: batch} for _ in inputs)
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            program = torch.onnx.export(module, example, dynamo=True, opset_version=OPSET,
                                        input_names=names, output_names=output_names,
                                        dynamic_shapes=dynamic, verbose=False)
            program.save(str(path))
    except Exception as e:  # the exporter raises many types; all mean the same to a user
        cause = e
        while cause is not None:  # torch.export wraps a Ctrl-C in its own error: it must still read as Ctrl-C
            if isinstance(cause, KeyboardInterrupt):
                raise KeyboardInterrupt from e
            cause = cause.__cause__ or cause.__context__
        raise EdgevisionError(f"ONNX export failed: {str(e).strip().splitlines()[0][:300]}") from e


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


def torch_name_scopes(node) -> list[str]:
    """The name scopes PyTorch's exporter recorded on an ONNX node (``pkg.torch.onnx.name_scopes``), outermost
    first: the module paths it was traced inside, then its op (['', 'model', 'model.features.0', 'leaky_relu']);
    empty when the node carries none."""
    import ast

    scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
    try:
        parts = ast.literal_eval(scopes) if scopes else []
    except (ValueError, SyntaxError):
        return []
    return [p for p in parts if isinstance(p, str)]


def _prod(dims: list[int]) -> int:
    return int(np.prod(dims)) if dims and all(d > 0 for d in dims) else 0
