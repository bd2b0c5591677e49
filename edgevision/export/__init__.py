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
from pathlib import Path

from edgevision import __version__
from edgevision.bundle import Bundle, BundleMeta, TensorSpec, load_bundle, now_iso, sha256_file, staging_dir, write_meta
from edgevision.check.golden import DEFAULT_GOLDEN_COUNT, GOLDEN_FILE
from edgevision.config import PRECISIONS, get_target, load_recipe
from edgevision.errors import AccuracyRegression, BadInput
from edgevision.graphs import count_macs
from edgevision.models.registry import get_variant

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
    if precision == "int8":
        warn_if_int8_is_slow_here(profile)

    import torch

    from edgevision.data.datasets import calibration_set
    from edgevision.export.base import ExportContext
    from edgevision.graphs import export_onnx
    from edgevision.models.wrappers import UInt8Input
    from edgevision.models.loading import build_model

    say(f"building {variant.name} ({'random weights' if random_weights else weights or 'bundled weights'})")
    torch_model = build_model(variant, weights=weights, random_seed=seed if random_weights else None,
                              num_classes=len(label_list))
    weights_file = None if random_weights else Path(weights or variant.weights_path)
    wrapper = UInt8Input(torch_model, variant.preprocess).eval()
    calibration = None
    if precision == "int8":
        say("preparing calibration data")
        calibration = calibration_set(calib, size, variant.stride, variant.preprocess.resize,
                                      limit=recipe.quantization.subset_size)

    with staging_dir(out, force) as work:
        onnx_fp32 = work / ".fp32.onnx"
        say(f"exporting ONNX graph (imgsz {size}, static shapes{', dynamic batch' if dynamic_batch else ''})")
        output_names = list(getattr(torch_model, "output_names", ["output"]))
        export_onnx(wrapper, size, onnx_fp32, output_names=output_names, dynamic_batch=dynamic_batch)
        ctx = ExportContext(onnx_fp32, work, precision, profile, recipe, size, calibration, wrapper)
        say(f"building the {profile.family} {precision} artifact")
        info = importlib.import_module(EXPORTERS[profile.family]).export_artifact(ctx)

        head = torch_model.head_spec(size)
        with torch.inference_mode():
            example = torch.zeros(1, size, size, 3, dtype=torch.uint8)
            outs = wrapper(example)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        meta = BundleMeta(
            edgevision_version=__version__,
            created=now_iso(),
            model=variant.name,
            family=variant.family,
            task=variant.task,
            imgsz=size,
            input=TensorSpec(name="images", shape=[1, size, size, 3], dtype="uint8", layout="NHWC"),
            outputs=[TensorSpec(name=n, shape=list(o.shape), dtype="float32") for n, o in zip(output_names, outs)],
            preprocess=variant.preprocess,
            head=head,
            labels=label_list,
            precision=precision,
            target=profile.name,
            target_family=profile.family,
            artifact=info.file,
            artifact_format=info.format,
            artifact_io=info.io,
            random_weights=random_weights,
            random_seed=seed if random_weights else None,
            weights_path=str(weights_file.resolve()) if weights_file else None,
            weights_sha256=sha256_file(weights_file) if weights_file else None,
            calibration=None if calibration is None else {
                "source": calibration.source, "images": len(calibration), "sha256": calibration.sha256},
            quantization=info.quantization,
            toolchain=_toolchain(info.toolchain),
            macs=count_macs(onnx_fp32),
            recipe=recipe.model_dump(mode="json"),
        )
        if (measure_reference or max_drop is not None) and not random_weights:
            say("measuring the FP32 PyTorch reference on the synthetic eval set")
            meta.reference = reference_accuracy(torch_model, meta, recipe)
        control = None
        if max_drop is not None:
            from edgevision.export.accuracy_control import control_accuracy

            if not (meta.reference and meta.reference.get("metrics")):
                raise BadInput("--max-drop needs the synthetic eval set's labels; it cannot run with custom --labels")
            exporter = importlib.import_module(EXPORTERS[profile.family])
            info, control = control_accuracy(exporter, ctx, meta, recipe, max_drop, say, max_float_layers)
            quant = dict(info.quantization or {})
            quant["accuracy_control"] = control.to_json()
            quant["budget_met"] = control.budget_met
            meta = meta.model_copy(update={"artifact": info.file, "artifact_format": info.format,
                                           "artifact_io": info.io, "quantization": quant})
        count = DEFAULT_GOLDEN_COUNT if golden is None else golden
        if count > 0:
            say(f"storing golden reference outputs for {count} inputs (checks without PyTorch)")
            meta.golden = store_golden(work, torch_model, meta, recipe, count)
        for leftover in work.glob(".*"):  # the FP32 graph and converter scratch files
            leftover.unlink(missing_ok=True)
        write_meta(work, meta)
    say(f"wrote {out}")
    if control is not None and not control.budget_met:
        best = control.best
        raise AccuracyRegression(
            f"--max-drop {max_drop:g}: the best attempt drops {control.metric_name} by {best.drop:.2f} points "
            f"with {len(best.float_layers)} layer(s) in float; the bundle at {out} is marked budget_met: false")
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


def reference_accuracy(torch_model, meta: BundleMeta, recipe) -> dict:
    """FP32 PyTorch metrics on the recipe's synthetic eval set: the number every check compares against."""
    from edgevision.check.evaluate import ModelIO, evaluate
    from edgevision.data.datasets import synthetic_eval_set
    from edgevision.check.reference import PyTorchRunner

    variant = get_variant(meta.model)
    data = synthetic_eval_set(meta.imgsz, variant.stride, recipe.eval.count, recipe.eval.seed, meta.task)
    if set(meta.labels) != set(variant.labels):  # the synthetic set's ground truth is in the variant's labels
        return {"data": data.description, "metrics": None, "note": "custom labels; synthetic set not applicable"}
    outcome = evaluate({"reference": PyTorchRunner(torch_model, meta.preprocess)}, data,
                       ModelIO.from_bundle(meta, recipe), output_names=[o.name for o in meta.outputs])
    return {"data": data.description, "metrics": outcome.metrics["reference"]}


def store_golden(work: Path, torch_model, meta: BundleMeta, recipe, count: int) -> dict:
    """The first ``count`` eval inputs at the model's size and the FP32 PyTorch outputs for them."""
    import numpy as np

    from edgevision.check.golden import write_golden
    from edgevision.data.datasets import synthetic_eval_set
    from edgevision.ops.preprocess import prepare
    from edgevision.runtime.base import run_in_batches
    from edgevision.check.reference import PyTorchRunner

    variant = get_variant(meta.model)
    data = synthetic_eval_set(meta.imgsz, variant.stride, count, recipe.eval.seed, meta.task)
    inputs = np.stack([prepare(s.image, meta.imgsz, meta.preprocess.resize)[0] for s in data.samples])
    runner = PyTorchRunner(torch_model, meta.preprocess)
    outputs = run_in_batches(runner, inputs)
    info = write_golden(work / GOLDEN_FILE, meta.task, inputs, outputs)
    return {**info, "data": data.description}


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
