"""Accuracy-controlled INT8: `export ... --precision int8 --max-drop 0.5`.

Quantize, measure the recipe's primary metric (mAP@0.5 or mIoU, in points) on the eval set against the FP32
reference, and while the drop exceeds the budget move the layers that hurt most back to float, then try
again; stop at the budget or at the layer limit (``--max-float-layers``), keeping the best attempt within the
limit. An attempt over the limit is recorded but never kept: the limit is a promise about the artifact.

* intel-npu (OpenVINO IR) and cpu (ONNX): plain INT8 first; when it misses the budget, NNCF's
  ``quantize_with_accuracy_control`` does the search itself, with edgevision's metric as its validation
  function (for cpu the result is NNCF's QDQ, int8 activations where a tensor can be negative: slower on ONNX
  Runtime than ORT's uint8 QDQ, see benchmarks/RESULTS.md, so it is used only when plain INT8 fails). NNCF
  reverts whole quantizer groups at a time (a ViT's attention matmuls share one group, so one iteration can
  leave 24 matmuls float); its result is counted afterwards and refused when it holds more float layers than
  the limit allows.
* jetson (TensorRT-form QDQ ONNX): edgevision's loop, re-ranking the artifact's layers after every attempt by
  the per-layer divergence of ``edgevision.check.per_layer`` and excluding them from ONNX Runtime's quantizer
  (``nodes_to_exclude``).
* rpi (LiteRT via PT2E): the same loop, but PT2E excludes whole PyTorch modules
  (``set_module_name(..., None)``), so the modules are ranked once, on a QDQ ONNX proxy of the same int8
  scheme, before the first LiteRT conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.bundle import IMAGE
from edgevision.check.evaluate import ModelIO, evaluate
from edgevision.data.datasets import EvalSet

DEFAULT_MAX_FLOAT_LAYERS = 6


@dataclass
class Attempt:
    float_layers: list[str]
    metric: float
    drop: float

    def to_json(self) -> dict:
        return {"float_layers": list(self.float_layers), "metric": round(self.metric, 3), "drop": round(self.drop, 3)}

    def describe(self, metric: str, max_drop: float) -> str:
        what = f"{len(self.float_layers)} layer(s) in float" if self.float_layers else "plain INT8"
        return f"{metric} {self.metric:.2f} (drop {self.drop:.2f}, budget {max_drop:g}) with {what}"


@dataclass
class ControlResult:
    metric_name: str
    reference: float
    max_drop: float
    max_layers: int = DEFAULT_MAX_FLOAT_LAYERS
    attempts: list[Attempt] = field(default_factory=list)

    def within_limit(self, attempt: Attempt) -> bool:
        return len(attempt.float_layers) <= self.max_layers

    @property
    def best(self) -> Attempt:
        """The attempt with the smallest drop (then the fewest float layers) among those within the layer
        limit; plain INT8, the first attempt, always is."""
        return min((a for a in self.attempts if self.within_limit(a)), key=lambda a: (a.drop, len(a.float_layers)))

    @property
    def budget_met(self) -> bool:
        return self.best.drop <= self.max_drop + 1e-9

    def over_limit_success(self) -> Attempt | None:
        """An attempt that met the budget only with more float layers than the limit, if any."""
        return next((a for a in self.attempts if not self.within_limit(a) and a.drop <= self.max_drop + 1e-9), None)

    def to_json(self) -> dict:
        return {"metric": self.metric_name, "reference": round(self.reference, 3), "max_drop": self.max_drop,
                "max_float_layers": self.max_layers, "budget_met": self.budget_met, "best": self.best.to_json(),
                "steps": [{**a.to_json(), "within_limit": self.within_limit(a)} for a in self.attempts]}


class _CallableRunner:
    """Adapts any ``f(feeds) -> outputs by name`` (one graph) to the Runner interface evaluate() expects (one
    image at a time)."""

    def __init__(self, fn: Callable[[dict], dict]) -> None:
        self.fn = fn

    def run(self, graph: str, feeds: dict) -> dict:
        return self.fn(feeds)


def primary_metric(runner, eval_set: EvalSet, io: ModelIO, metric: str) -> float:
    """``runner``: a Runner, or a callable ``f(feeds) -> outputs by name`` running the model graph."""
    runner = runner if hasattr(runner, "run") else _CallableRunner(runner)
    outcome = evaluate({"artifact": runner}, eval_set, io)
    return float(outcome.metrics["artifact"][metric])


def control_loop(quantize: Callable[[list[str]], Path], measure: Callable[[Path], float],
                 rank: Callable[[Path, list[str]], list[str]], reference: float, max_drop: float, metric_name: str,
                 max_layers: int = DEFAULT_MAX_FLOAT_LAYERS, say: Callable[[str], None] = lambda _: None,
                 ) -> tuple[ControlResult, list[str]]:
    """Generic search: returns the result and the float-layer list of the best attempt (already re-quantized
    when it is not the last one tried)."""
    result = ControlResult(metric_name, reference, max_drop, max_layers)
    excluded: list[str] = []
    while True:
        artifact = quantize(excluded)
        value = measure(artifact)
        attempt = Attempt(list(excluded), value, reference - value)
        result.attempts.append(attempt)
        say(attempt.describe(metric_name, max_drop))
        if attempt.drop <= max_drop or len(excluded) >= max_layers:
            break
        candidates = [name for name in rank(artifact, excluded) if name not in excluded]
        if not candidates:
            break
        excluded.append(candidates[0])
    best = result.best
    if best is not result.attempts[-1]:
        quantize(best.float_layers)  # leave the best attempt's artifact in place
    return result, best.float_layers


def _provisional_bundle(ctx, meta, info):
    from edgevision.bundle import Bundle
    from edgevision.export.base import bind_artifact_names

    spec = meta.graphs[ctx.name].model_copy(update={"artifact": info.file, "artifact_format": info.format,
                                                   "artifact_io": info.io})
    return Bundle(ctx.workdir, meta.model_copy(update={"graphs": {**meta.graphs,
                                                                 ctx.name: bind_artifact_names(spec, info)}}))


def _float_producers(model) -> dict[str, list[str]]:
    """For each node, the non-Q/DQ nodes whose outputs it reads, looking through QuantizeLinear/DequantizeLinear."""
    producer = {t: n for n in model.graph.node for t in n.output}

    def source(tensor: str) -> str | None:
        node = producer.get(tensor)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node = producer.get(node.input[0])
        return node.name if node is not None else None

    return {n.name: [p for p in (source(i) for i in n.input) if p] for n in model.graph.node}


def _onnx_ranking(ctx, artifact: Path, inputs: list[dict], excluded: list[str] = ()) -> list[tuple[str, str]]:
    """(node name, torch module) pairs, most added noise first. A layer that is already float but still adds
    noise is fed a badly quantized tensor, so the layers producing its inputs take its place."""
    import onnx

    from edgevision.check.per_layer import onnx_per_layer, rank_by_added_noise

    layers = onnx_per_layer(ctx.onnx_fp32, artifact, inputs)
    scope = {e.name: e.scope for e in layers}
    producers = _float_producers(onnx.load(str(artifact)))
    quantizable = ("Conv", "MatMul", "Gemm", "ConvTranspose", "Add", "MaxPool", "LeakyRelu", "Relu", "Clip", "Mul",
                   "Concat", "Resize", "AveragePool", "GlobalAveragePool")
    out: list[tuple[str, str]] = []
    for e in rank_by_added_noise(layers):
        if e.added_noise <= 0 or e.op_type not in quantizable:
            continue
        names = producers.get(e.name, []) if e.name in excluded else [e.name]
        for name in names:
            if name not in excluded and name not in (n for n, _ in out):
                out.append((name, scope.get(name, "")))
    return out


def control_accuracy(exporter, ctx, meta, recipe, max_drop: float, say,
                     max_layers: int = DEFAULT_MAX_FLOAT_LAYERS) -> tuple[object, ControlResult]:
    """Run the target's accuracy-control search; returns the final ArtifactInfo and the search record."""
    from edgevision.data.datasets import synthetic_eval_set
    from edgevision.models.registry import bundle_scene_size, get_variant
    from edgevision.ops.preprocess import prepare
    from edgevision.runtime.base import open_runner

    variant = get_variant(meta.model)
    metric = recipe.primary_metric
    eval_set = synthetic_eval_set(bundle_scene_size(meta), variant.stride, recipe.eval.count, recipe.eval.seed,
                                  meta.task)
    io = ModelIO.from_bundle(meta, recipe)
    reference = float(meta.reference["metrics"][metric])
    probe = [{IMAGE: np.ascontiguousarray(prepare(s.image, meta.imgsz, meta.preprocess.resize)[0][None])}
             for s in eval_set.samples[:8]]
    state = {"info": None}

    def measure(_artifact: Path) -> float:
        runner = open_runner(_provisional_bundle(ctx, meta, state["info"]))
        try:
            return primary_metric(runner, eval_set, io, metric)
        finally:
            runner.close()

    if ctx.profile.family in ("intel-npu", "cpu"):
        # Step 0 is plain INT8, as on every target; only when it misses the budget does NNCF's own search run
        # (on the OpenVINO IR for intel-npu, on the ONNX graph for cpu).
        state["info"] = exporter.export_artifact(ctx)
        value = measure(ctx.workdir / state["info"].file)
        result = ControlResult(metric, reference, max_drop, max_layers, [Attempt([], value, reference - value)])
        say(result.attempts[0].describe(metric, max_drop))
        if reference - value <= max_drop or max_layers == 0:
            return state["info"], result
        ctx.options["accuracy_control"] = {"eval_set": eval_set, "io": io, "metric": metric, "max_drop": max_drop,
                                           "max_layers": max_layers}
        say(f"NNCF accuracy-controlled quantization (max drop {max_drop:g} {metric})")
        info = exporter.export_artifact(ctx)
        state["info"] = info
        value = measure(ctx.workdir / info.file)
        attempt = Attempt(info.quantization.get("float_layers", []), value, reference - value)
        result.attempts.append(attempt)
        say(attempt.describe(metric, max_drop))
        if not result.within_limit(attempt):
            say(f"refused: NNCF's result keeps {len(attempt.float_layers)} layers in float, over the limit of "
                f"{max_layers} (--max-float-layers)")
        if result.best is not attempt:  # keep the best attempt within the limit on disk: plain INT8
            ctx.options.pop("accuracy_control")
            info = state["info"] = exporter.export_artifact(ctx)
        return info, result

    if ctx.profile.family == "rpi":
        # PT2E excludes whole PyTorch modules; rank them on a QDQ proxy of the same int8 scheme
        from edgevision.export.ort_quantize import quantize_qdq

        proxy = ctx.workdir / ".proxy.onnx"
        # PT2E's histogram observer has no ONNX Runtime twin; percentile clips outliers the same way
        method = ctx.recipe.quantization.method_for("rpi")
        quantize_qdq(ctx, proxy, symmetric_activations=True, op_types=ctx.recipe.quantization.op_types_for("rpi"),
                     calibration_method="percentile" if method == "histogram" else method)
        ranking = []
        for _node, scope in _onnx_ranking(ctx, proxy, probe):
            module = "model." + scope.rsplit(".", 1)[0] if scope.count(".") >= 1 else ("model." + scope if scope else "")
            if module and module != "model." and module not in ranking:
                ranking.append(module)
        proxy.unlink(missing_ok=True)

        def rank(_artifact, _excluded):
            return ranking
    else:
        def rank(artifact, excluded):
            return [name for name, _ in _onnx_ranking(ctx, artifact, probe, excluded)]

    def quantize(excluded: list[str]) -> Path:
        ctx.options["exclude"] = list(excluded)
        state["info"] = exporter.export_artifact(ctx)
        return ctx.workdir / state["info"].file

    result, _best = control_loop(quantize, measure, rank, reference, max_drop, metric, max_layers=max_layers, say=say)
    return state["info"], result
