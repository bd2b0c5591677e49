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

from edgevision.check.metrics import OutputSimilarity, confusion_matrix, detection_map, segmentation_scores
from edgevision.data.datasets import EvalSet, Sample
from edgevision.ops.postprocess import make_postprocessor
from edgevision.ops.preprocess import prepare
from edgevision.ops.results import Detections, Segmentation
from edgevision.runtime.base import Runner, run_in_batches

EVAL_CONF = 0.001  # mAP is computed over the whole score range
EVAL_MAX_DETECTIONS = 100


@dataclass(frozen=True)
class ModelIO:
    """What evaluation needs to know about a model, whichever side (bundle or registry) it came from."""

    task: str
    imgsz: int
    resize: str
    head: dict
    labels: tuple[str, ...]
    iou_threshold: float = 0.45
    agreement_score_threshold: float = 0.25

    @classmethod
    def from_bundle(cls, meta, recipe) -> ModelIO:
        return cls(meta.task, meta.imgsz, meta.preprocess.resize, dict(meta.head), tuple(meta.labels),
                   recipe.iou_threshold, recipe.agreement_score_threshold)


class _Detection:
    def __init__(self, io: ModelIO) -> None:
        self.io = io
        self.gt_boxes: list[np.ndarray] = []
        self.gt_labels: list[np.ndarray] = []
        self.preds: list[Detections] = []

    def add(self, sample: Sample | None, result: Detections, gt: Detections | None = None) -> None:
        if gt is not None:
            keep = gt.scores >= self.io.agreement_score_threshold
            self.gt_boxes.append(gt.boxes[keep])
            self.gt_labels.append(gt.class_ids[keep])
        else:
            self.gt_boxes.append(sample.boxes)
            self.gt_labels.append(sample.labels)
        self.preds.append(result)

    def result(self) -> dict[str, float]:
        return detection_map(self.gt_boxes, self.gt_labels, self.preds, len(self.io.labels))


class _Segmentation:
    def __init__(self, io: ModelIO) -> None:
        self.n = len(io.labels)
        self.conf = np.zeros((self.n, self.n), np.int64)

    def add(self, sample: Sample | None, result: Segmentation, gt: Segmentation | None = None) -> None:
        truth = gt.label_map if gt is not None else sample.semantic
        self.conf += confusion_matrix(truth, result.label_map, self.n)

    def result(self) -> dict[str, float]:
        return segmentation_scores(self.conf)


_ACCUMULATORS = {"detect": _Detection, "segment": _Segmentation}
AGREEMENT_METRICS = {"detect": ("map50", "agreement_map50"), "segment": ("miou", "agreement_miou")}


@dataclass
class EvalOutcome:
    metrics: dict[str, dict[str, float]]  # runner name -> metric -> value (only for labelled data)
    agreement: dict[str, float]  # artifact vs reference
    similarity: dict[str, dict[str, float]]  # output name -> cosine / max_abs_error / sqnr_db
    images: int
    worst: list[dict]  # images where artifact and reference disagree most


def evaluate(runners: Mapping[str, Runner], eval_set: EvalSet, io: ModelIO, *, output_names: list[str],
             progress: Callable[[int], None] | None = None) -> EvalOutcome:
    """``runners`` is keyed by role; with both "reference" and "artifact", agreement and similarity are
    measured too."""
    if io.task not in _ACCUMULATORS:
        raise ValueError(f"no evaluator for task '{io.task}'")
    post = make_postprocessor(io.head, io.imgsz, **({"conf": EVAL_CONF, "iou": io.iou_threshold,
                                                     "max_detections": EVAL_MAX_DETECTIONS}
                                                    if io.task == "detect" else {}))
    acc = {name: _ACCUMULATORS[io.task](io) for name in runners} if eval_set.labelled else {}
    paired = "reference" in runners and "artifact" in runners
    agreement = _ACCUMULATORS[io.task](io) if paired else None
    similarity = OutputSimilarity() if paired else None
    per_image: list[tuple[float, str]] = []
    count = 0
    chunk = max(getattr(r, "max_batch", 1) for r in runners.values())
    samples = iter(eval_set.samples)
    while group := list(itertools.islice(samples, chunk)):
        prepared = [prepare(sample.image, io.imgsz, io.resize) for sample in group]
        batch = np.ascontiguousarray(np.stack([b for b, _ in prepared]))
        outputs = {name: run_in_batches(r, batch) for name, r in runners.items()}
        for i, (sample, (_, geometry)) in enumerate(zip(group, prepared)):
            single = {name: [o[i : i + 1] for o in out] for name, out in outputs.items()}
            results = {name: post([o[0] for o in out], geometry) for name, out in single.items()}
            for name, a in acc.items():
                a.add(sample, results[name])
            if paired:
                agreement.add(None, results["artifact"], gt=results["reference"])
                similarity.add(single["reference"], single["artifact"])
                ref, art = single["reference"][0].ravel(), single["artifact"][0].ravel()
                per_image.append((float(np.abs(ref - art).mean()), sample.name))
            count += 1
            if progress:
                progress(count)
    metrics = {name: a.result() for name, a in acc.items()}
    agree: dict[str, float] = {}
    if agreement is not None:
        base, key = AGREEMENT_METRICS[io.task]
        agree = {key: agreement.result()[base]}
    worst = [{"image": n, "mean_abs_error": round(e, 6)} for e, n in sorted(per_image, reverse=True)[:5]]
    return EvalOutcome(metrics, agree, similarity.result(output_names) if similarity else {}, count, worst)
