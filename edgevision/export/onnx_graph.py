"""Small ONNX graph utilities shared by the target exporters (the PyTorch -> ONNX step is graphs.export_onnx)."""

from __future__ import annotations

def _downstream(model, start: list, stop_types: tuple[str, ...] = ()) -> list[str]:
    """Names of the ``start`` nodes and of every node they feed, not entering nodes of ``stop_types``."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    selected: dict[str, None] = {}
    stack = list(start)
    while stack:
        node = stack.pop()
        if node.op_type in stop_types or node.name in selected:
            continue
        selected[node.name] = None
        for out in node.output:
            stack.extend(consumers.get(out, []))
    return list(selected)


def tail_nodes(model, op_types: list[str]) -> list[str]:
    """Names of the nodes of ``op_types`` and of every node downstream of them (the head's float tail)."""
    return _downstream(model, [n for n in model.graph.node if n.op_type in op_types]) if op_types else []


def _image_inputs(model) -> list:
    """The graph's uint8 inputs: images, which the wrapper casts and normalises in-graph."""
    from onnx import TensorProto

    return [i for i in model.graph.input if i.type.tensor_type.elem_type == TensorProto.UINT8]


def input_stem_nodes(model, stop_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")) -> list[str]:
    """Names of the nodes between the graph input and the first ``stop_types`` node: the uint8 wrapper's
    transpose, cast and folded mean/std. Quantizing them buys nothing (the first conv's input is quantized
    anyway) and costs much: ONNX Runtime runs a broadcast QLinearMul/QLinearAdd on the full-resolution image
    several times slower than the float ops. Only uint8 image inputs have a stem; float inputs (embeddings,
    prompts) are quantized where they are used."""
    inputs = {i.name for i in _image_inputs(model)}
    return _downstream(model, [n for n in model.graph.node if inputs.intersection(n.input)], stop_types)


def simplify_input_stem(model) -> None:
    """Make the stem's mean/std constants cheap for ONNX Runtime, in place and exactly (same values).

    ORT's layout optimizer moves the stem to NHWC, where a (1, 3, 1, 1) constant broadcasts over an innermost
    axis of 3, which its elementwise kernels run element by element (0.7 ms per op at 224x224). A constant that
    is the same for every channel becomes a scalar (an Add of zeros is dropped); a truly per-channel one is
    repeated along the width to (1, 3, 1, W), which broadcasts as whole rows (0.05 ms) in either layout."""
    import numpy as np
    from onnx import numpy_helper

    stem = set(input_stem_nodes(model))
    inits = {i.name: i for i in model.graph.initializer}
    images = _image_inputs(model)
    if not images:
        return
    dims = [d.dim_value for d in images[0].type.tensor_type.shape.dim]  # one image input per graph
    # the image width: (N, H, W, C) for edgevision's uint8 NHWC input, (N, C, H, W) otherwise; 0 if dynamic
    width = (dims[2] if dims[3] in (1, 3, 4) else dims[3]) if len(dims) == 4 else 0
    graph_outputs = {o.name for o in model.graph.output}
    dropped: dict[str, str] = {}
    for node in list(model.graph.node):
        if node.name not in stem or node.op_type not in ("Mul", "Add") or node.input[1] not in inits:
            continue
        value = numpy_helper.to_array(inits[node.input[1]])
        if value.size == 0:
            continue
        if not np.all(value == value.flat[0]):
            if value.ndim == 4 and value.shape[0] == 1 and value.shape[2:] == (1, 1) and width:
                rows = numpy_helper.from_array(np.ascontiguousarray(np.repeat(value, width, axis=3)),
                                               f"{node.name}_rows")
                model.graph.initializer.append(rows)
                node.input[1] = rows.name
            continue
        if node.op_type == "Add" and value.flat[0] == 0 and node.output[0] not in graph_outputs:
            dropped[node.output[0]] = node.input[0]
            model.graph.node.remove(node)
            continue
        scalar = numpy_helper.from_array(np.array(value.flat[0], value.dtype), f"{node.name}_scalar")
        model.graph.initializer.append(scalar)
        node.input[1] = scalar.name
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            while name in dropped:
                name = dropped[name]
            node.input[i] = name
    used = {name for node in model.graph.node for name in node.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def module_scope_nodes(model, modules: list[str]) -> list[str]:
    """Names of the nodes that PyTorch's exporter traced inside any of ``modules`` (module paths of the exported
    wrapper, e.g. "model.model.image_encoder.blocks.0", the names rpi's traced graph uses), read from the nodes'
    ``pkg.torch.onnx.name_scopes``; a recipe can then keep a whole block float by one name on every ONNX target."""
    from edgevision.graphs import torch_name_scopes

    wanted = set(modules)
    return [node.name for node in model.graph.node if wanted.intersection(torch_name_scopes(node))]


def ensure_node_names(model) -> None:
    """Give unnamed nodes stable names, so that quantizer exclusions and per-layer reports can refer to them."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
