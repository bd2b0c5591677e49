"""LiteRT backend for rpi bundles: ai-edge-litert's interpreter (XNNPACK delegate by default), or the older
tflite-runtime wheel that some Raspberry Pi OS images ship."""

from __future__ import annotations

import cv2
import numpy as np

from edgevision.errors import MissingDependency
from edgevision.quiet import native_output_silenced
from edgevision.runtime.base import Runner, open_graphs


def load_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # device fallback; breaks with numpy 2 on x86
        except ImportError:
            raise MissingDependency("ai_edge_litert", "rpi", "the LiteRT runtime") from None
    return Interpreter


def xnnpack_delegation(path, latest_features: bool = False) -> dict:
    """What the XNNPACK delegate takes over in the .tflite at ``path``: the model's op count, how many of them
    run inside XNNPACK, in how many partitions, and the ops left to TFLite's own kernels by name.

    Read from the interpreter after delegation: each DELEGATE node stands for one partition, whose ops are those
    between its input and output tensors. ``latest_features`` turns on XNNPACK's latest-operators flag (some
    ops, such as int8 BATCH_MATMUL, are only delegated with it)."""
    from collections import Counter

    kwargs = {"experimental_default_delegate_latest_features": True} if latest_features else {}
    with native_output_silenced():
        interp = load_interpreter_class()(model_path=str(path), num_threads=1, **kwargs)
        interp.allocate_tensors()
    ops = interp._get_ops_details()
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    model_ops = {op["index"]: op for op in ops if op["op_name"] != "DELEGATE"}
    producer = {t: op["index"] for op in model_ops.values() for t in op["outputs"]}
    delegated: set[int] = set()
    for part in partitions:
        boundary, pending = set(part["inputs"]), list(part["outputs"])
        while pending:
            tensor = pending.pop()
            node = producer.get(tensor)
            if tensor in boundary or node is None or node in delegated:
                continue
            delegated.add(node)
            pending.extend(model_ops[node]["inputs"])
    left = Counter(op["op_name"] for i, op in model_ops.items() if i not in delegated)
    return {"ops": len(model_ops), "delegated": len(delegated), "partitions": len(partitions),
            "not_delegated": dict(sorted(left.items()))}


def signature_order(interp) -> tuple[list[dict], list[dict]]:
    """Input and output details in the order of the converted module's arguments and results (litert-torch
    names them args_0, args_1, ... and output_0, ...), which is the graph's TensorSpec order."""
    details_in = {d["index"]: d for d in interp.get_input_details()}
    details_out = {d["index"]: d for d in interp.get_output_details()}
    signatures = interp._get_full_signature_list() or {}
    if len(signatures) != 1:
        return list(details_in.values()), list(details_out.values())
    signature = next(iter(signatures.values()))

    def ordered(names: dict, details: dict) -> list[dict]:
        key = lambda n: (int(n.rsplit("_", 1)[1]) if n.rsplit("_", 1)[-1].isdigit() else 0, n)  # noqa: E731
        return [details[names[n]] for n in sorted(names, key=key)]

    return ordered(signature["inputs"], details_in), ordered(signature["outputs"], details_out)


class LiteRTRunner(Runner):
    runtime = "litert"
    device = "CPU (XNNPACK)"

    def __init__(self, bundle, threads=None) -> None:
        super().__init__(bundle, threads)
        interpreter_cls = load_interpreter_class()

        def open_one(name, spec, path):
            with native_output_silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                latest = (spec.quantization or {}).get("xnnpack", {}).get("latest_features", False)
                kwargs = {"experimental_default_delegate_latest_features": True} if latest else {}
                interp = interpreter_cls(model_path=str(path), num_threads=self.threads, **kwargs)
                interp.allocate_tensors()
            return _Graph(interp, spec)

        self._graphs = open_graphs(bundle, open_one)

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._graphs[graph].run(feeds)


class _Graph:
    """One interpreter, its inputs and outputs bound by the names the bundle recorded for them."""

    def __init__(self, interp, spec) -> None:
        self.interp = interp
        by_name = {d["name"]: d for d in interp.get_input_details()}
        out_by_name = {d["name"]: d for d in interp.get_output_details()}
        layouts = {d["name"]: d.get("layout") for d in (spec.artifact_io or {}).get("inputs", [])}
        try:
            self.inputs = {t.name: _Input(by_name[t.bound_name], layouts.get(t.bound_name)) for t in spec.inputs}
            self.outputs = {t.name: out_by_name[t.bound_name] for t in spec.outputs}
        except KeyError as e:
            raise ValueError(f"the .tflite has no tensor {e}; its inputs are {list(by_name)}, outputs "
                             f"{list(out_by_name)}") from None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, x in feeds.items():
            inp = self.inputs[name]
            self.interp.set_tensor(inp.index, inp.feed(x))
        self.interp.invoke()
        outs = {}
        for name, d in self.outputs.items():
            y = self.interp.get_tensor(d["index"])
            scale, zero = d["quantization"]
            if np.dtype(d["dtype"]).kind in "iu" and scale:
                y = (y.astype(np.float32) - zero) * scale
            outs[name] = np.array(y, np.float32, copy=True)
        return outs


class _Input:
    def __init__(self, detail: dict, layout: str | None) -> None:
        self.index = detail["index"]
        self.nchw = layout == "NCHW"
        self.dtype = np.dtype(detail["dtype"])
        self.scale, self.zero = detail["quantization"]
        self.lut = None
        if self.dtype.kind in "iu" and self.scale:
            # uint8 pixels -> the artifact's quantized input through a 256-entry table: one cv2.LUT pass instead
            # of four NumPy passes over the frame (about 4 ms per 448x448 frame on the dev machine)
            info = np.iinfo(self.dtype)
            q = np.rint(np.arange(256, dtype=np.float32) / self.scale) + self.zero
            self.lut = np.clip(q, info.min, info.max).astype(self.dtype)

    def feed(self, batch: np.ndarray) -> np.ndarray:
        x = batch.transpose(0, 3, 1, 2) if self.nchw else batch
        if self.dtype == x.dtype and (self.scale in (0.0, 1.0) and self.zero == 0 or x.dtype.kind == "f"):
            return np.ascontiguousarray(x)
        if self.lut is not None and x.dtype == np.uint8 and self.dtype.itemsize == 1:
            return cv2.LUT(np.ascontiguousarray(x), self.lut)
        if self.dtype.kind in "iu" and self.scale:  # quantized input: values through the recorded scale / zero point
            info = np.iinfo(self.dtype)
            q = np.rint(x.astype(np.float32) / self.scale) + self.zero
            return np.clip(q, info.min, info.max).astype(self.dtype)
        return x.astype(self.dtype)
