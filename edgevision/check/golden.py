"""Golden reference data stored in the bundle, so `check` works on a device that has no PyTorch.

At export, per graph: the inputs it sees for a fixed set of eval images (the uint8 image itself, or what the FP32
graphs before it made of the image plus sampled prompts) and the FP32 PyTorch outputs for them: fp16 for small
outputs, and for segmentation maps the argmax plus the winning class's probability. On the device each graph
runs on its own stored inputs and is compared output by output (cosine, max abs error, SQNR); the task's graph is
also compared by the task's agreement metric (agreement mAP@0.5 for detection, agreement mIoU for segmentation).
What is stored of the outputs, and how it is compared, is the task's (``Task.golden_arrays`` and friends).

``golden.npz`` keys: ``<graph>/inputs/<input name>`` and ``<graph>/outputs/<key>``. Format 1 bundles stored one
graph as ``inputs`` and ``output_0``/``argmax_0``/``confidence_0``; they are read as graph ``model``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from edgevision.check.metrics import OutputSimilarity
from edgevision.tasks import get_task

GOLDEN_FILE = "golden.npz"
GOLDEN_BUDGET_BYTES = 5_000_000  # a bundle up to 512 px input
GOLDEN_BUDGET_BYTES_LARGE = 16_000_000  # above 512 px (a 1024 px encoder's embeddings are large)
MIN_GOLDEN_SAMPLES = 2  # per graph
DEFAULT_GOLDEN_COUNT = 32

Golden = dict[str, dict[str, dict[str, np.ndarray]]]  # graph -> "inputs"/"outputs" -> name -> array


def golden_budget(imgsz: int) -> int:
    return GOLDEN_BUDGET_BYTES if imgsz <= 512 else GOLDEN_BUDGET_BYTES_LARGE


def write_golden(path: Path, task: str, per_graph: dict[str, tuple[dict, dict]], imgsz: int) -> dict:
    """``per_graph``: graph -> (inputs by name, FP32 outputs by name), the same samples for every graph. Saved
    with samples dropped until the compressed file fits the budget (never below 2 a graph); returns what was
    stored."""
    t = get_task(task)
    budget = golden_budget(imgsz)
    n = min(len(next(iter(ins.values()))) for ins, _ in per_graph.values())
    while True:
        arrays = {}
        for graph, (inputs, outputs) in per_graph.items():
            arrays.update({f"{graph}/inputs/{k}": v[:n] for k, v in inputs.items()})
            reduced = t.golden_arrays(graph, {k: v[:n] for k, v in outputs.items()})
            arrays.update({f"{graph}/outputs/{k}": v for k, v in reduced.items()})
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        if buf.tell() <= budget or n <= MIN_GOLDEN_SAMPLES:
            break
        n = max(MIN_GOLDEN_SAMPLES, min(n - 1, int(n * budget / buf.tell() * 0.95)))
    Path(path).write_bytes(buf.getvalue())
    return {"file": GOLDEN_FILE, "samples": n, "graphs": {g: {"samples": n} for g in per_graph},
            "bytes": buf.tell(), "budget_bytes": budget}


def load_golden(bundle) -> Golden | None:
    """The bundle's golden data by graph, or None when it has none (or it is unreadable)."""
    path = Path(bundle.path) / GOLDEN_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            flat = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if "inputs" in flat:
        flat = _format_1_keys(flat, bundle.meta)
    out: Golden = {}
    for key, value in flat.items():
        graph, kind, name = key.split("/", 2)
        out.setdefault(graph, {"inputs": {}, "outputs": {}})[kind][name] = value
    return out


def _format_1_keys(flat: dict, meta) -> dict:
    """A format 1 golden.npz (one graph; outputs stored by position) under format 2 keys."""
    names = meta.graph("model").output_names
    out = {"model/inputs/image": flat.pop("inputs")}
    for key, value in flat.items():
        kind, _, k = key.rpartition("_")
        name = names[int(k)]
        out[f"model/outputs/{name if kind == 'output' else kind + '.' + name}"] = value
    return out


def golden_samples(golden: Golden) -> int:
    return min(len(next(iter(g["inputs"].values()))) for g in golden.values())


def compare_golden(runner, meta, golden: Golden, recipe) -> dict:
    """Run every graph of the artifact on its stored inputs; per-output similarity, and the task's agreement
    metric on the task's graph. Output keys are the output names of a one-graph bundle, else graph/output."""
    task = get_task(meta.task)
    sim = OutputSimilarity()
    post = task.make_postprocessor(meta.head, meta.imgsz, **task.eval_options(recipe))
    agreement = task.accumulator(meta.labels, recipe)
    single = len(meta.graphs) == 1
    counts = {}
    for graph in meta.graphs:
        stored = golden.get(graph)
        if stored is None:
            continue
        inputs, outputs = stored["inputs"], stored["outputs"]
        n = len(next(iter(inputs.values())))
        counts[graph] = n
        for i in range(n):
            result = runner.run(graph, {k: v[i : i + 1] for k, v in inputs.items()})
            ref, art = task.golden_similarity(graph, outputs, i, result)
            prefix = "" if single else f"{graph}/"
            sim.add({prefix + k: v for k, v in ref.items()}, {prefix + k: v for k, v in art.items()})
            if graph == task.graph:
                agreement.add(*task.golden_results(outputs, i, result, post))
    report = {"samples": min(counts.values()) if counts else 0, "graphs": counts,
              "output_similarity": sim.result()}
    if task.graph in counts:
        report["agreement"] = task.agreement_figures(agreement.result())
    else:
        report["agreement"] = {}
    return report
