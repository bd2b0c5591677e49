"""Per-layer divergence: where along the network does the artifact part from the FP32 reference?

Both graphs run with their intermediate tensors exposed (ONNX Runtime and OpenVINO by marking every tensor an
output, LiteRT by preserving all tensors), tensors are matched by name (LiteRT: by position), and each layer is
scored by the SQNR of its output against the reference, SQNR = 10 log10(|ref|^2 / |ref - artifact|^2) dB. A layer's *added*
error is the SQNR drop from its (worst) input to its output; layers are ranked by the noise power they add
(the same drop in linear terms, so a layer fed exact inputs is not over-blamed for its small inherent error),
which names the layers to keep in higher precision. The Polygraphy idea, for every backend edgevision targets.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.bundle import Bundle
from edgevision.errors import BadInput


@dataclass
class LayerError:
    name: str  # node / op name in the artifact
    op_type: str
    tensor: str
    sqnr_db: float
    input_sqnr_db: float
    added_db: float  # SQNR drop from input to output (inf when the input is exact)
    added_noise: float  # noise-to-signal power the layer adds: 10^(-SQNR_out/10) - 10^(-SQNR_in/10); the ranking
    cosine: float
    scope: str = ""  # the PyTorch module it came from, when the graph records it

    def to_json(self) -> dict:
        def clean(k, v):
            if not isinstance(v, float):
                return v
            if not np.isfinite(v):
                return None
            return float(f"{v:.3e}") if k == "added_noise" else round(v, 3)

        return {k: clean(k, v) for k, v in self.__dict__.items()}


def sqnr_db(ref: np.ndarray, art: np.ndarray) -> float:
    ref = ref.astype(np.float64).ravel()
    err = ref - art.astype(np.float64).ravel()
    e2 = float(err @ err)
    s2 = float(ref @ ref)
    if e2 == 0:
        return float("inf")
    if s2 == 0:
        return float("-inf")
    return 10 * np.log10(s2 / e2)


def _nsr(sqnr: float) -> float:
    """Noise-to-signal power ratio of an SQNR in dB (0 for an exact tensor)."""
    return 0.0 if sqnr == float("inf") else float(10 ** (-sqnr / 10))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    d = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / d) if d > 0 else 1.0


@dataclass
class Node:
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    scope: str = ""


def rank_layers(nodes: list[Node], ref: dict[str, list[np.ndarray]], art: dict[str, list[np.ndarray]],
                graph_inputs: list[str] = ()) -> list[LayerError]:
    """Score every node whose first output exists in both runs, in graph order."""
    sq: dict[str, float] = {name: float("inf") for name in graph_inputs}
    layers = []
    for node in nodes:
        if not node.outputs:
            continue
        t = node.outputs[0]
        if not ref.get(t) or not art.get(t):
            continue
        r = np.concatenate([x.ravel() for x in ref[t]])
        a = np.concatenate([x.ravel() for x in art[t]])
        if r.shape != a.shape or r.dtype.kind not in "fc":
            continue
        s = sqnr_db(r, a)
        sq[t] = s
        ins = [sq[i] for i in node.inputs if i in sq]
        s_in = min(ins) if ins else float("inf")
        added = s_in - s if np.isfinite(s_in) or not np.isfinite(s) else float("inf")
        noise = _nsr(s) - _nsr(s_in)
        layers.append(LayerError(node.name, node.op_type, t, s, s_in, added, noise, _cosine(r, a), node.scope))
    return layers


# ------------------------------------------------------------------------------------------------ ONNX
def _torch_module(node) -> str:
    """The wrapped model's innermost module a node was traced in: ['', 'model', 'model.features.0.2',
    'leaky_relu'] -> 'features.0.2'."""
    from edgevision.graphs import torch_name_scopes

    modules = [p for p in torch_name_scopes(node) if p.startswith("model.")]
    return modules[-1][len("model."):] if modules else ""


def _onnx_nodes(model) -> list[Node]:
    return [Node(n.name, n.op_type, list(n.input), list(n.output), _torch_module(n)) for n in model.graph.node]


Feeds = list[dict[str, np.ndarray]]  # one feed per sample, keyed by the file's own input names


def _onnx_intermediates(path: Path, inputs: Feeds, threads: int) -> dict[str, list[np.ndarray]]:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    existing = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for t in node.output:
            if t and t not in existing:
                model.graph.output.append(onnx.ValueInfoProto(name=t))
                existing.add(t)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    acc: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in inputs:
        for n, v in zip(names, sess.run(names, feed)):
            acc[n].append(np.asarray(v))
    return acc


def onnx_per_layer(reference_onnx: Path, artifact_onnx: Path, inputs: Feeds, threads: int = 2,
                   artifact_inputs: Feeds | None = None):
    """``inputs`` feed the reference, ``artifact_inputs`` (default: the same) the artifact."""
    import onnx

    ref = _onnx_intermediates(reference_onnx, inputs, threads)
    art = _onnx_intermediates(artifact_onnx, artifact_inputs or inputs, threads)
    model = onnx.load(str(artifact_onnx))
    nodes = [n for n in _onnx_nodes(model) if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    # QDQ graphs feed layers through DequantizeLinear outputs: map those back to the float tensor they carry
    alias = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized"):
            alias[n.output[0]] = n.input[0][: -len("_quantized")]
        elif n.op_type == "DequantizeLinear":
            for q in model.graph.node:
                if q.op_type == "QuantizeLinear" and q.output[0] == n.input[0]:
                    alias[n.output[0]] = q.input[0]
    for node in nodes:
        node.inputs = [alias.get(i, i) for i in node.inputs]
    return rank_layers(nodes, ref, art, [i.name for i in model.graph.input])


# -------------------------------------------------------------------------------------------- OpenVINO
def _ov_intermediates(model, inputs: Feeds, threads: int) -> tuple[dict, list[Node]]:
    import openvino as ov

    core = ov.Core()
    skip = {"Parameter", "Result", "Constant", "FakeQuantize", "Convert"}
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in skip and op.get_output_size() > 0]
    model.add_outputs([op.output(0) for op in ops])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                 "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    # compiled outputs keep the model's output order; name each by the op feeding its Result
    names = [model.output(i).get_node().input_value(0).get_node().get_friendly_name()
             for i in range(len(model.outputs))]
    acc: dict[str, list[np.ndarray]] = {}
    for feed in inputs:
        res = req.infer(feed)
        for i, name in enumerate(names):
            acc.setdefault(name, []).append(np.array(res[compiled.output(i)]))
    nodes = []
    for op in ops:
        ins = []
        for i in range(op.get_input_size()):
            src = op.input_value(i).get_node()
            while src.get_type_name() in ("FakeQuantize", "Convert") and src.get_input_size() > 0:
                src = src.input_value(0).get_node()
            ins.append(src.get_friendly_name())
        nodes.append(Node(op.get_friendly_name(), op.get_type_name(), ins, [op.get_friendly_name()]))
    return acc, nodes


def openvino_per_layer(reference_onnx: Path, artifact_xml: Path, inputs: Feeds, threads: int = 2,
                       artifact_inputs: Feeds | None = None):
    import openvino as ov

    core = ov.Core()
    ref, _ = _ov_intermediates(ov.convert_model(str(reference_onnx)), inputs, threads)
    art, nodes = _ov_intermediates(core.read_model(str(artifact_xml)), artifact_inputs or inputs, threads)
    return rank_layers(nodes, ref, art)


# ------------------------------------------------------------------------------------------------ LiteRT
def _tflite_intermediates(path: Path, inputs: Feeds, threads: int):
    """Every op output per input, keyed by tensor index: the converter's tensor names are not unique (two
    LeakyReLUs of one model can share a name), so a name would pool two different tensors."""
    from edgevision.runtime.litert import load_interpreter_class

    interp = load_interpreter_class()(model_path=str(path), num_threads=threads,
                                      experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    details = {t["index"]: t for t in interp.get_tensor_details()}
    by_name = {d["name"]: d for d in interp.get_input_details()}
    acc: dict[str, list[np.ndarray]] = {}
    # DELEGATE entries stand for the ops XNNPACK took over, which are listed (and preserved) themselves
    ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    for feed in inputs:
        for name, x in feed.items():
            inp = by_name[name]
            scale, zero = inp["quantization"]
            if np.dtype(inp["dtype"]).kind == "i" and scale:
                x = np.clip(np.rint(x.astype(np.float32) / scale) + zero, -128, 127)
            interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interp.invoke()
        for op in ops:
            for t in op["outputs"]:
                d = details.get(t)
                if d is None:
                    continue
                try:
                    v = interp.get_tensor(t)
                except ValueError:
                    continue
                s, z = d["quantization"]
                if np.dtype(d["dtype"]).kind in "iu" and s:
                    v = (v.astype(np.float32) - z) * s
                acc.setdefault(str(t), []).append(np.array(v, np.float32))
    nodes = []
    for op in ops:
        outs = [str(t) for t in op["outputs"] if t in details]
        ins = [str(t) for t in op["inputs"] if t >= 0 and t in details]
        label = details[op["outputs"][0]]["name"] if op["outputs"] and op["outputs"][0] in details else op["index"]
        scope = _litert_module(label) if isinstance(label, str) else ""
        nodes.append(Node(f"{op['op_name']}:{label}", op["op_name"], ins, outs, scope))
    return acc, nodes


def _litert_module(tensor_name: str) -> str:
    """'...UInt8Input/...VisionTransformer_model/...Sequential_blocks/...Block_0/...LayerNorm_norm1;12' ->
    'blocks.0.norm1' (the wrapped model's module; each level is 'package.Class_attribute'). A fused op is named
    'first;;...;;last;k': its module is the last one's."""
    path = tensor_name.split(";;")[-1].rsplit(";", 1)[0]
    attrs = [level.rsplit(".", 1)[-1].split("_", 1) for level in path.split("/")]
    attrs = [a[1] for a in attrs if len(a) == 2]
    return ".".join(attrs[1:] if attrs[:1] == ["model"] else attrs)


def _by_position(nodes: list[Node]) -> tuple[dict[tuple[str, str, int], str], dict[tuple[str, str], int]]:
    """(module scope, op type, k-th op of that type in the scope) -> output tensor, skipping the quantizer's own
    ops; and how many ops of each (scope, op type) there are."""
    counts: dict[tuple[str, str], int] = {}
    keys = {}
    for n in nodes:
        if n.op_type in ("QUANTIZE", "DEQUANTIZE") or not n.outputs:
            continue
        group = (n.scope, n.op_type)
        keys[(*group, counts.get(group, 0))] = n.outputs[0]
        counts[group] = counts.get(group, 0) + 1
    return keys, counts


def _match_by_position(ref_nodes: list[Node], nodes: list[Node]) -> dict[str, str]:
    """artifact tensor -> reference tensor. The k-th FULLY_CONNECTED of a module scope is matched with the k-th of
    that scope in the other graph, but only where both graphs hold as many ops of that type in the scope: the float
    conversion folds a LayerNorm's affine MUL/ADD into the next FULLY_CONNECTED and the quantized one does not, and
    a global count would then pair every later MUL with the wrong one."""
    (ref_keys, ref_counts), (art_keys, art_counts) = _by_position(ref_nodes), _by_position(nodes)
    return {t: ref_keys[k] for k, t in art_keys.items()
            if k in ref_keys and ref_counts[k[:2]] == art_counts[k[:2]]}


def litert_per_layer(reference_tflite: Path, artifact_tflite: Path, inputs: Feeds, threads: int = 2,
                     artifact_inputs: Feeds | None = None):
    """A float and a quantized conversion of one model number their tensors differently, so layers are matched
    by position within their module scope: the k-th CONV_2D of a scope in the artifact with the k-th CONV_2D of
    that scope in the reference, and so on (rank_layers drops a pair whose shapes differ). A DEQUANTIZE is
    transparent: the op after it is scored against the quantized tensor before it."""
    ref, ref_nodes = _tflite_intermediates(reference_tflite, inputs, threads)
    art, nodes = _tflite_intermediates(artifact_tflite, artifact_inputs or inputs, threads)
    ref = {art_t: ref[ref_t] for art_t, ref_t in _match_by_position(ref_nodes, nodes).items() if ref_t in ref}
    dequantized = {n.outputs[0]: n.inputs[0] for n in nodes if n.op_type == "DEQUANTIZE" and n.inputs and n.outputs}
    kept = []
    for n in nodes:
        if n.op_type in ("QUANTIZE", "DEQUANTIZE"):
            continue
        kept.append(Node(n.name, n.op_type, [dequantized.get(i, i) for i in n.inputs], n.outputs, n.scope))
    return rank_layers(kept, ref, art)


# ------------------------------------------------------------------------------------------------ driver
def per_layer_report(bundle: Bundle, *, samples: int = 8, threads: int = 2, top: int = 10,
                     graph: str | None = None) -> dict:
    """Rank the layers of one graph of the artifact (the task's graph by default) by the error they add,
    against an FP32 graph of the same format exported from the PyTorch reference. The graph's inputs are its
    golden inputs (or synthetic eval images, for a one-graph bundle without golden data)."""
    from edgevision.check.reference import reference_runner
    from edgevision.check.golden import load_golden
    from edgevision.data.datasets import synthetic_eval_set
    from edgevision.graphs import export_onnx
    from edgevision.models.registry import bundle_scene_size, get_variant
    from edgevision.ops.preprocess import prepare
    from edgevision.tasks import get_task

    meta = bundle.meta
    graph = graph or get_task(meta.task).graph
    spec = meta.graph(graph)
    golden = load_golden(bundle)
    if golden is not None and graph in golden:
        stored = golden[graph]["inputs"]
        n = min(samples, len(next(iter(stored.values()))))
        feeds = [{k: np.ascontiguousarray(v[i : i + 1]) for k, v in stored.items()} for i in range(n)]
    elif [t.name for t in spec.inputs] == ["image"]:
        variant = get_variant(meta.model)
        data = synthetic_eval_set(bundle_scene_size(meta), variant.stride, samples, 1, meta.task)
        feeds = [{"image": np.ascontiguousarray(prepare(s.image, meta.imgsz, meta.preprocess.resize)[0][None])}
                 for s in data.samples]
    else:
        raise BadInput(f"{bundle.path}: no golden inputs for graph {graph}; re-export the bundle")
    artifact_feeds = [{t.bound_name: f[t.name] for t in spec.inputs} for f in feeds]
    ref_graph = reference_runner(bundle, threads=threads).graphs[graph]
    artifact = bundle.graph_path(graph)
    with tempfile.TemporaryDirectory() as tmp:
        ref_onnx = Path(tmp) / "reference.onnx"
        export_onnx(ref_graph.module, ref_onnx, inputs=ref_graph.inputs, output_names=ref_graph.outputs)
        fmt = spec.artifact_format
        if fmt == "onnx":
            layers = onnx_per_layer(ref_onnx, artifact, feeds, threads, artifact_feeds)
        elif fmt == "openvino-ir":
            layers = openvino_per_layer(ref_onnx, artifact, feeds, threads, artifact_feeds)
        elif fmt == "tflite":
            import litert_torch

            from edgevision.runtime.litert import load_interpreter_class, signature_order

            ref_tflite = Path(tmp) / "reference.tflite"
            litert_torch.convert(ref_graph.module, ref_graph.example()).export(str(ref_tflite))
            interp = load_interpreter_class()(model_path=str(ref_tflite))
            ordered, _ = signature_order(interp)
            ref_feeds = [{d["name"]: f[t.name] for t, d in zip(spec.inputs, ordered)} for f in feeds]
            layers = litert_per_layer(ref_tflite, artifact, ref_feeds, threads, artifact_feeds)
        else:
            raise ValueError(f"no per-layer comparison for {fmt}")
    ranked = rank_by_added_noise(layers)
    return {
        "graph": graph,
        "samples": len(feeds),
        "layers": [e.to_json() for e in layers],  # graph order, for plotting along the network
        "top": [e.to_json() for e in ranked[:top]],
        "keep_in_higher_precision": [e.name for e in ranked[:3] if e.added_noise > 1e-3],
    }


def rank_by_added_noise(layers: list[LayerError]) -> list[LayerError]:
    return sorted(layers, key=lambda e: -e.added_noise)


def plot_per_layer(report: dict, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    ys = [x["sqnr_db"] if x["sqnr_db"] is not None else 80.0 for x in layers]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(range(len(ys)), ys, marker=".", lw=1)
    worst = {x["name"] for x in report["top"][:3]}
    for i, x in enumerate(layers):
        if x["name"] in worst:
            ax.annotate(x["name"][:28], (i, ys[i]), fontsize=7, rotation=30)
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("SQNR vs FP32 (dB)")
    ax.set_title(title or "per-layer SQNR")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
