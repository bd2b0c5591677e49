"""PyTorch model -> bundle for a target: ``export_bundle("fast-yolo-demo", target="cpu", precision="int8")``.

The steps every target shares live here (resolve the variant and profile, load weights, export the uint8-input
FP32 ONNX graph, gather calibration data, measure the FP32 reference, write metadata atomically); each target
module turns the ONNX graph into its artifact. A new target is a module with ``export_artifact(ctx)`` plus a
line in ``EXPORTERS``.
"""

from __future__ import annotations

import importlib
import logging
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgevision import __version__
from edgevision.bundle import (IMAGE, MODEL_GRAPH, Bundle, BundleMeta, GraphSpec, TensorSpec, load_bundle,
                               lowest_precision, now_iso, sha256_file, staging_dir, write_meta)
from edgevision.check.golden import DEFAULT_GOLDEN_COUNT, GOLDEN_FILE
from edgevision.config import PRECISIONS, get_target, load_recipe
from edgevision.errors import AccuracyRegression, BadInput
from edgevision.graphs import count_macs
from edgevision.export.base import bind_artifact_names
from edgevision.models.registry import bundle_scene_size, get_variant
from edgevision.tasks import get_task

# target family -> module with export_artifact(ctx) -> ArtifactInfo
EXPORTERS = {
    "cpu": "edgevision.export.cpu",
    "intel-npu": "edgevision.export.intel_npu",
    "rpi": "edgevision.export.rpi",
    "jetson": "edgevision.export.jetson",
}

Progress = Callable[[str], None]


def default_bundle_dir(model: str, target: str, precision: str) -> Path:
    return Path("bundles") / f"{model}-{target}-{precision}"


def read_labels(path: Path) -> list[str]:
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"--labels {path}: cannot read ({e.__class__.__name__}); give a text file, one class a line") \
            from None
    names = [n for n in names if n]
    if not names:
        raise BadInput(f"--labels {path}: no class names; give a text file with one class name a line")
    return names


def export_bundle(
    model: str,
    target: str = "cpu",
    precision: str = "int8",
    out: Path | None = None,
    *,
    weights: Path | None = None,
    calib: Path | None = None,
    imgsz: int | None = None,
    labels: Path | list[str] | None = None,
    random_weights: bool = False,
    seed: int = 0,
    force: bool = False,
    dynamic_batch: bool = False,
    measure_reference: bool = True,
    golden: int | None = None,
    max_drop: float | None = None,
    max_float_layers: int = 6,
    progress: Progress | None = None,
) -> Bundle:
    """Export ``model`` for ``target`` and return the finished bundle. Raises BadInput (exit 2) on bad input."""
    say = progress or (lambda _msg: None)
    variant = get_variant(model)
    profile = get_target(target)
    if precision not in PRECISIONS:
        raise BadInput(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision not in profile.precisions:
        raise BadInput(f"target {profile.name} cannot do {precision} (its runtime has no {precision} kernels here); "
                       f"it can do {', '.join(profile.precisions)}")
    if profile.family not in EXPORTERS:
        raise BadInput(f"target {profile.name}: no exporter for the '{profile.family}' family in this version")
    if variant.config_in_weights and imgsz is None and weights is not None:
        from edgevision.models.loading import checkpoint_config

        imgsz = checkpoint_config(Path(weights)).get("img_size")  # a student's own input size
    size = imgsz or profile.default_imgsz or variant.imgsz
    if size <= 0 or size % variant.stride:
        raise BadInput(f"--imgsz {size}: must be a positive multiple of {variant.name}'s stride {variant.stride}")
    if dynamic_batch and profile.static_shapes:
        raise BadInput(f"--dynamic-batch: target {profile.name} needs static shapes (its profile says "
                       f"static_shapes: true); export without --dynamic-batch, or for cpu or jetson")
    if random_weights and weights is not None:
        raise BadInput("pass either --weights or --random-weights, not both")
    if max_drop is not None and (precision != "int8" or random_weights):
        raise BadInput("--max-drop applies to --precision int8 with real weights (it measures accuracy)")

    label_list = list(variant.labels) if labels is None else (labels if isinstance(labels, list) else read_labels(labels))
    if not random_weights and weights is None and not variant.has_weights:
        raise BadInput(f"model '{variant.name}' ships no weights; pass --weights PATH (a state_dict of this model) "
                       f"or --random-weights for speed tests")
    out = Path(out) if out is not None else default_bundle_dir(variant.name, target, precision)
    recipe = load_recipe(variant.name, variant.task)

    from edgevision.bundle import check_output_dir

    check_output_dir(out, force)  # before any slow work

    from edgevision.data.datasets import calibration_set
    from edgevision.export.base import ExportContext
    from edgevision.graphs import export_onnx
    from edgevision.models.loading import build_model
    from edgevision.models.wrappers import model_graphs

    say(f"building {variant.name} ({'random weights' if random_weights else weights or 'bundled weights'})")
    torch_model = build_model(variant, weights=weights, random_seed=seed if random_weights else None,
                              num_classes=len(label_list))
    scene_size = getattr(torch_model, "scene_size", None) or variant.scene_size  # a student's: its teacher's
    weights_file = None if random_weights else Path(weights or variant.weights_path)
    graphs = model_graphs(torch_model, variant.preprocess, size)
    head = torch_model.head_spec(size)
    if max_drop is not None and [g.name for g in graphs] != [MODEL_GRAPH]:
        raise BadInput(f"--max-drop works on one-graph models in this version; {variant.name} exports as "
                       f"{', '.join(g.name for g in graphs)}: keep a graph in float with the recipe's graph_precision")
    precisions = graph_precisions(graphs, precision, recipe, profile)
    calibration = feeds = None
    if "int8" in precisions.values():
        say("preparing calibration data")
        wanted = [g.name for g in graphs if precisions[g.name] == "int8"]
        rolled = get_task(variant.task).rollout_feeds(numpy_graphs(graphs), head, size,
                                                      recipe.quantization.subset_size, recipe.eval.seed, calib, say)
        if rolled is not None:  # a stateful model: its graphs' inputs recorded while it runs
            feeds, source = rolled
            feeds = {g.name: typed_feeds(g, feeds[g.name]) for g in graphs if g.name in wanted}
            calibration = RecordedCalibration(source, max(len(v) for v in feeds.values()))
        else:
            calibration = calibration_set(calib, size, variant.stride, variant.preprocess.resize,
                                          limit=recipe.quantization.subset_size, scene_size=scene_size or size)
            feeds = chained_feeds(graphs, calibration.batches, recipe.eval.seed, wanted)
    exporter = importlib.import_module(EXPORTERS[profile.family])
    if precision == "int8":  # after the weights and calibration data are read: a bad input stays one line
        warn_if_int8_is_slow_here(profile)
        if profile.family == "jetson" and recipe.quantization.model_type == "transformer":
            say("note: on many Jetson GPUs a ViT runs as fast in FP16 as in INT8, with no calibration and no "
                "accuracy risk: compare with --precision fp16 (edgevision bench on the device)")

    with staging_dir(out, force) as work:
        specs, contexts, toolchain = {}, {}, {}
        for g in graphs:
            onnx_fp32 = work / f".{g.name}.fp32.onnx"
            what = f"graph {g.name} " if len(graphs) > 1 else ""
            say(f"exporting ONNX {what}(imgsz {size}, static shapes{', dynamic batch' if dynamic_batch else ''})")
            export_onnx(g.module, onnx_fp32, inputs=g.inputs, output_names=g.outputs, dynamic_batch=dynamic_batch)
            ctx = ExportContext(onnx_fp32, work, precisions[g.name], profile, recipe, size,
                                feeds[g.name] if feeds and g.name in feeds else None, g.module, g)
            say(f"building the {profile.family} {precisions[g.name]} artifact{' of ' + g.name if what else ''}")
            info = exporter.export_artifact(ctx)
            specs[g.name] = graph_spec(g, info, ctx, calibration, count_macs(onnx_fp32))
            contexts[g.name] = ctx
            toolchain.update(info.toolchain)

        meta = BundleMeta(
            edgevision_version=__version__,
            created=now_iso(),
            model=variant.name,
            family=variant.family,
            task=variant.task,
            imgsz=size,
            graphs=specs,
            preprocess=variant.preprocess,
            head=head,
            labels=label_list,
            precision=lowest_precision(precisions.values()),
            target=profile.name,
            target_family=profile.family,
            random_weights=random_weights,
            random_seed=seed if random_weights else None,
            weights_path=str(weights_file.resolve()) if weights_file else None,
            weights_sha256=sha256_file(weights_file) if weights_file else None,
            calibration=None if calibration is None else {
                "source": calibration.source, "images": len(calibration), "sha256": calibration.sha256},
            toolchain=_toolchain(toolchain),
            recipe=recipe.model_dump(mode="json"),
            scene_size=scene_size,
        )
        if (measure_reference or max_drop is not None) and not random_weights:
            say("measuring the FP32 PyTorch reference on the synthetic eval set")
            meta.reference = reference_accuracy(torch_model, meta, recipe)
        control = None
        if max_drop is not None:
            from edgevision.export.accuracy_control import control_accuracy

            if not (meta.reference and meta.reference.get("metrics")):
                raise BadInput("--max-drop needs the synthetic eval set's labels; it cannot run with custom --labels")
            ctx = contexts[MODEL_GRAPH]
            info, control = control_accuracy(exporter, ctx, meta, recipe, max_drop, say, max_float_layers)
            quant = dict(info.quantization or {})
            quant["accuracy_control"] = control.to_json()
            quant["budget_met"] = control.budget_met
            spec = specs[MODEL_GRAPH].model_copy(update={"artifact": info.file, "artifact_format": info.format,
                                                        "artifact_io": info.io, "quantization": quant})
            meta = meta.model_copy(update={"graphs": {**specs, MODEL_GRAPH: bind_artifact_names(spec, info)}})
        count = DEFAULT_GOLDEN_COUNT if golden is None else golden
        if count > 0:
            say(f"storing golden reference outputs for {count} inputs (checks without PyTorch)")
            meta.golden = store_golden(work, graphs, meta, recipe, count)
        for leftover in work.glob(".*"):  # the FP32 graph and converter scratch files
            leftover.unlink(missing_ok=True)
        write_meta(work, meta)
    say(f"wrote {out}")
    if control is not None and not control.budget_met:
        best, over = control.best, control.over_limit_success()
        hint = (f" (an attempt with {len(over.float_layers)} float layers met it: raise --max-float-layers to "
                f"accept that)" if over else "")
        raise AccuracyRegression(
            f"--max-drop {max_drop:g}: the best attempt within --max-float-layers {max_float_layers} drops "
            f"{control.metric_name} by {best.drop:.2f} points with {len(best.float_layers)} layer(s) in float"
            f"{hint}; the bundle at {out} is marked budget_met: false")
    return load_bundle(out)


def warn_if_int8_is_slow_here(profile) -> None:
    """Warn when the bundle will run on this very CPU (cpu, or intel-npu without an NPU here) and this CPU's INT8
    kernels are unlikely to beat FP32 (no VNNI/AMX, or no NEON dot product)."""
    from edgevision.hardware import cpu_info

    note = cpu_info().int8_slower_note(profile.runtimes[0])
    if note is None or profile.family not in ("cpu", "intel-npu"):
        return
    if profile.family == "intel-npu" and profile.device and _openvino_has_device(profile.device):
        return
    logging.getLogger("edgevision").warning(
        "INT8 is likely slower than FP32 on this machine: %s. The bundle is still right for the target; "
        "compare with `edgevision bench` before deploying here", note)


def _openvino_has_device(device: str) -> bool:
    try:
        import openvino as ov
    except ImportError:
        return False
    return device in ov.Core().available_devices


def graph_precisions(graphs, precision: str, recipe, profile) -> dict[str, str]:
    """Each graph's precision: ``precision``, or the recipe's ``graph_precision`` for a graph it keeps in a
    higher precision (a decoder in fp16 beside an int8 encoder, say)."""
    order = {"int8": 0, "fp16": 1, "fp32": 2}
    names = [g.name for g in graphs]
    kept = recipe.graph_precision_for(profile.family)
    unknown = sorted(set(kept) - set(names))
    if unknown:
        raise BadInput(f"recipe graph_precision names graph(s) {', '.join(unknown)}; this model's graphs are "
                       f"{', '.join(names)}")
    out = {}
    for name in names:
        wanted = kept.get(name, precision)
        out[name] = wanted if order[wanted] > order[precision] else precision
        if out[name] not in profile.precisions:
            raise BadInput(f"recipe graph_precision {name}: {out[name]}: target {profile.name} can do "
                           f"{', '.join(profile.precisions)}")
    return out


def chained_feeds(graphs, images: list, seed: int, wanted: list[str] | None = None) -> dict[str, list[dict]]:
    """Per graph, one feed per image (each batch 1): the image input is the image itself; a later graph's
    inputs are what the FP32 graphs before it produced from that image (matched by name), and its sampler
    draws the rest (prompts). Only graphs in ``wanted`` (default: all) are collected; a graph runs only when a
    wanted graph after it needs its outputs."""
    import numpy as np
    import torch

    wanted = [g.name for g in graphs] if wanted is None else wanted
    needed: set[str] = set()  # tensors some wanted graph takes
    for g in graphs:
        if g.name in wanted:
            needed |= {t.name for t in g.inputs}
    rng = np.random.default_rng(seed)
    feeds: dict[str, list[dict]] = {name: [] for name in wanted}
    for image in images:
        available = {IMAGE: np.ascontiguousarray(image)}
        for k, g in enumerate(graphs):
            later = {t.name for h in graphs[k + 1:] if h.name in wanted for t in h.inputs}
            runs = bool(later & set(g.outputs))
            if g.name not in wanted and not runs:
                continue
            missing = [t.name for t in g.inputs if t.name not in available]
            if missing:
                if g.sample_inputs is None:
                    raise BadInput(f"graph {g.name} takes {', '.join(missing)}, which no graph before it makes and "
                                   f"which it has no sampler for")
                available.update({n: v for n, v in g.sample_inputs(rng, 1).items() if n in missing})
            feed = {t.name: np.ascontiguousarray(available[t.name], dtype=t.dtype) for t in g.inputs}
            if g.name in wanted:
                feeds[g.name].append(feed)
            if runs:
                with torch.inference_mode():
                    out = g.module(*(torch.from_numpy(feed[t.name]) for t in g.inputs))
                out = out if isinstance(out, (tuple, list)) else (out,)
                available.update({n: o.float().numpy() for n, o in zip(g.outputs, out) if n in needed})
    return feeds


@dataclass
class RecordedCalibration:
    """Calibration inputs recorded while a stateful model ran (``Task.rollout_feeds``), not images."""

    source: str
    samples: int
    sha256: str | None = None

    def __len__(self) -> int:
        return self.samples


def numpy_graphs(graphs) -> dict[str, Callable[[dict], dict]]:
    """The FP32 graphs as callables on NumPy dicts (what a runner's graphs are), for recording roll-outs."""
    import numpy as np
    import torch

    def runs(g):
        def run(feeds: dict) -> dict:
            with torch.inference_mode():
                out = g.module(*(torch.from_numpy(np.ascontiguousarray(feeds[t.name], dtype=t.dtype))
                                 for t in g.inputs))
            out = out if isinstance(out, (tuple, list)) else (out,)
            return {n: o.float().numpy() for n, o in zip(g.outputs, out)}
        return run

    return {g.name: runs(g) for g in graphs}


def typed_feeds(g, feeds: list[dict]) -> list[dict]:
    """Recorded feeds with exactly the graph's inputs, in their dtypes."""
    import numpy as np

    return [{t.name: np.ascontiguousarray(f[t.name], dtype=t.dtype) for t in g.inputs} for f in feeds]


def graph_spec(g, info, ctx, calibration, macs: int) -> GraphSpec:
    """The bundle's record of one exported graph: output shapes from one FP32 run of its module."""
    import torch

    with torch.inference_mode():
        outs = g.module(*g.example())
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    calib = None
    if ctx.calibration:
        sources = sorted({t.name for t in g.inputs} - {IMAGE})
        calib = {"samples": len(ctx.calibration_feeds), "images_from": calibration.source,
                 **({"inputs_from": "FP32 outputs of the graphs before it, and sampled prompts",
                     "inputs": sources} if sources else {})}
    spec = GraphSpec(artifact=info.file, artifact_format=info.format, inputs=list(g.inputs),
                     outputs=[TensorSpec(name=n, shape=list(o.shape), dtype="float32") for n, o in zip(g.outputs, outs)],
                     precision=ctx.precision, quantization=info.quantization, calibration=calib, artifact_io=info.io,
                     macs=macs)
    return bind_artifact_names(spec, info)


def reference_accuracy(torch_model, meta: BundleMeta, recipe) -> dict:
    """FP32 PyTorch metrics on the recipe's synthetic eval set: the number every check compares against."""
    from edgevision.check.evaluate import ModelIO, evaluate
    from edgevision.data.datasets import synthetic_eval_set
    from edgevision.check.reference import PyTorchRunner

    variant = get_variant(meta.model)
    data = synthetic_eval_set(bundle_scene_size(meta), variant.stride, recipe.eval.count, recipe.eval.seed,
                              meta.task, meta.labels)
    if not data.labelled:  # the synthetic set's ground truth is not in the model's classes
        return {"data": data.description, "metrics": None, "note": "the model's classes are not the synthetic "
                                                                   "shapes': no accuracy, agreement only"}
    reference = PyTorchRunner(torch_model, meta.preprocess, imgsz=meta.imgsz, cache=True)
    outcome = evaluate({"reference": reference}, data, ModelIO.from_bundle(meta, recipe))
    return {"data": data.description, "metrics": outcome.metrics["reference"]}


def store_golden(work: Path, graphs, meta: BundleMeta, recipe, count: int) -> dict:
    """Per graph, the inputs it sees for the first ``count`` eval images (the image itself, or what the FP32
    graphs before it made of it plus sampled prompts) and the FP32 PyTorch outputs for them."""
    import numpy as np

    from edgevision.check.golden import write_golden
    from edgevision.data.datasets import synthetic_eval_set
    from edgevision.ops.preprocess import prepare

    variant = get_variant(meta.model)
    data = synthetic_eval_set(bundle_scene_size(meta), variant.stride, count, recipe.eval.seed, meta.task)
    rolled = get_task(meta.task).rollout_feeds(numpy_graphs(graphs), meta.head, meta.imgsz, count,
                                                recipe.eval.seed)
    if rolled is not None:
        feeds = {g.name: typed_feeds(g, rolled[0][g.name]) for g in graphs}
        count = min(len(v) for v in feeds.values())
        feeds = {name: v[:count] for name, v in feeds.items()}
    else:
        images = [prepare(s.image, meta.imgsz, meta.preprocess.resize)[0][None] for s in data.samples]
        feeds = chained_feeds(graphs, images, recipe.eval.seed)
    import torch

    per_graph = {}
    for g in graphs:
        inputs = {t.name: np.concatenate([f[t.name] for f in feeds[g.name]]) for t in g.inputs}
        outputs = {n: [] for n in g.outputs}
        with torch.inference_mode():
            for i in range(0, count, 16):
                out = g.module(*(torch.from_numpy(inputs[t.name][i : i + 16]) for t in g.inputs))
                out = out if isinstance(out, (tuple, list)) else (out,)
                for n, o in zip(g.outputs, out):
                    outputs[n].append(o.float().numpy())
        per_graph[g.name] = (inputs, {n: np.concatenate(v) for n, v in outputs.items()})
    info = write_golden(work / GOLDEN_FILE, meta.task, per_graph, meta.imgsz)
    return {**info, "data": rolled[1] if rolled is not None else data.description}


def _toolchain(extra: dict[str, str]) -> dict[str, str]:
    import torch

    versions = {"edgevision": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for name in ("onnx", "onnxscript", "onnxruntime"):
        mod = sys.modules.get(name) or _try_import(name)
        if mod is not None:
            versions[name] = getattr(mod, "__version__", "?")
    versions.update(extra)
    return versions


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


__all__ = ["EXPORTERS", "default_bundle_dir", "export_bundle", "load_bundle"]
