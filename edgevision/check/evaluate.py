"""Run one or more runners over an eval set, in batches of the largest ``max_batch`` among them (each runner
takes its own share of a batch), and accumulate task metrics.

Inputs are preprocessed once and fed to every runner, so the reference and the artifact see identical
pixels. Metrics stream: nothing per-image is kept except detections (mAP needs them all at the end).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from edgevision.check.metrics import OutputSimilarity
from edgevision.data.datasets import EvalSet
from edgevision.ops.preprocess import prepare
from edgevision.runtime.base import Runner
from edgevision.tasks import get_task


@dataclass(frozen=True)
class ModelIO:
    """What evaluation needs to know about a model, whichever side (bundle or registry) it came from."""

    task: str
    imgsz: int
    resize: str
    head: dict
    labels: tuple[str, ...]
    recipe: object  # config.Recipe: the thresholds evaluation and agreement use

    @classmethod
    def from_bundle(cls, meta, recipe) -> ModelIO:
        return cls(meta.task, meta.imgsz, meta.preprocess.resize, dict(meta.head), tuple(meta.labels), recipe)


@dataclass
class EvalOutcome:
    metrics: dict[str, dict[str, float]]  # runner name -> metric -> value (only for labelled data)
    agreement: dict[str, float]  # artifact vs reference
    similarity: dict[str, dict[str, float]]  # output name -> cosine / max_abs_error / sqnr_db
    images: int
    worst: list[dict]  # images where artifact and reference disagree most
    notes: tuple[str, ...] = ()  # what the task can say about the disagreement


def evaluate(runners: Mapping[str, Runner], eval_set: EvalSet, io: ModelIO, *,
             progress: Callable[[int], None] | None = None) -> EvalOutcome:
    """``runners`` is keyed by role; with both "reference" and "artifact", agreement and similarity are
    measured too."""
    task = get_task(io.task)
    custom = task.evaluate_runners(runners, eval_set, io, progress)
    if custom is not None:  # a task that evaluates sequences, not images
        return EvalOutcome(custom["metrics"], custom["agreement"], custom.get("similarity", {}), custom["images"],
                           custom.get("worst", []), tuple(custom.get("notes", ())))
    post = task.make_postprocessor(io.head, io.imgsz, **task.eval_options(io.recipe))
    acc = {name: task.accumulator(io.labels, io.recipe) for name in runners} if eval_set.labelled else {}
    paired = "reference" in runners and "artifact" in runners
    agreement = task.accumulator(io.labels, io.recipe) if paired else None
    similarity = OutputSimilarity() if paired else None
    per_image: list[tuple[float, str]] = []
    count = 0
    chunk = max(getattr(r, "max_batch", 1) for r in runners.values())
    samples = iter(eval_set.samples)
    while group := list(itertools.islice(samples, chunk)):
        prepared = [prepare(sample.image, io.imgsz, io.resize) for sample in group]
        batch = np.ascontiguousarray(np.stack([b for b, _ in prepared]))
        geometries = [g for _, g in prepared]
        outputs = {name: task.infer_eval(r, batch, group, geometries, io.head) for name, r in runners.items()}
        for i, (sample, geometry) in enumerate(zip(group, geometries)):
            single = {name: out[i] if isinstance(out, list) else {k: o[i : i + 1] for k, o in out.items()}
                      for name, out in outputs.items()}
            results = {name: post({k: o[0] for k, o in out.items()}, geometry) for name, out in single.items()}
            for name, a in acc.items():
                a.add(sample, results[name])
            if paired:
                agreement.add(results["reference"], results["artifact"])
                ref, art = (task.similarity_outputs(single[k]) for k in ("reference", "artifact"))
                similarity.add(ref, art)
                error = np.mean([np.abs(v - art[k]).mean() if v.size else 0.0 for k, v in ref.items()])
                per_image.append((float(error), sample.name))
            count += 1
            if progress:
                progress(count)
    metrics = {name: a.result() for name, a in acc.items()}
    agree: dict[str, float] = {}
    if agreement is not None:
        agree = task.agreement_figures(agreement.result())
    worst = [{"image": n, "mean_abs_error": round(e, 6)} for e, n in sorted(per_image, reverse=True)[:5]]
    return EvalOutcome(metrics, agree, similarity.result() if similarity else {}, count, worst)
