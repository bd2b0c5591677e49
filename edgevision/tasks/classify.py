"""Image classification: the top classes and their probabilities; top-1 / top-5 accuracy in points, and
against the FP32 reference: top-1 / top-5 agreement and the KL divergence of the probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevision.data.shapes import SHAPE_CLASSES
from edgevision.ops.results import Classification
from edgevision.tasks.base import Accumulator, Task


class TopKAccumulator(Accumulator):
    """Ground truth from a Sample's first label, or from a reference runner's result (agreement: its top-1 is
    the truth, the KL divergence of its probabilities from the artifact's is averaged, and so is the overlap of
    the two top-5 sets)."""

    def __init__(self) -> None:
        self.n = self.top1 = self.top5 = 0
        self.kl: list[float] = []
        self.overlap: list[float] = []

    def add(self, truth, result: Classification) -> None:
        if isinstance(truth, Classification):
            expected = int(truth.class_ids[0])
            if truth.probs is not None and result.probs is not None:
                p = np.clip(truth.probs.astype(np.float64), 1e-12, 1)
                q = np.clip(result.probs.astype(np.float64), 1e-12, 1)
                self.kl.append(float((p * np.log(p / q)).sum()))
            ref5, art5 = {int(c) for c in truth.class_ids[:5]}, {int(c) for c in result.class_ids[:5]}
            self.overlap.append(len(ref5 & art5) / max(len(ref5), 1))
        else:
            expected = int(truth.labels[0])
        self.n += 1
        self.top1 += int(int(result.class_ids[0]) == expected)
        self.top5 += int(expected in {int(c) for c in result.class_ids[:5]})

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        out = {"top1": 100.0 * self.top1 / n, "top5": 100.0 * self.top5 / n}
        if self.kl:
            out["kl_divergence"] = float(np.mean(self.kl))
        if self.overlap:
            out["top5_overlap"] = 100.0 * float(np.mean(self.overlap))
        return out


class ClassifyTask(Task):
    name = "classify"
    result_type = Classification
    postprocessors = {"classify": "edgevision.ops.classify:ClassifyPostprocessor"}
    agreement = ("top1", "agreement_top1")
    agreement_extras = {"top5": "agreement_top5", "top5_overlap": "top5_overlap", "kl_divergence": "kl_divergence"}
    json_key = "classes"
    plot_marker = "^"
    default_recipe = "default-classify.yaml"
    synthetic_labels = SHAPE_CLASSES

    def accumulator(self, labels: Sequence[str], recipe) -> TopKAccumulator:
        return TopKAccumulator()

    def synthetic_eval_set(self, imgsz: int, stride: int, count: int, seed: int):
        """One shape per image, over a textured background with clutter, partly occluded at times; the label is
        the shape's class."""
        from edgevision.data.samples import synthetic_objects

        return synthetic_objects(imgsz, count, seed)

    def draw(self, frame_bgr: np.ndarray, result: Classification, labels: Sequence[str]) -> np.ndarray:
        from edgevision.pipeline.render import draw_classification

        return draw_classification(frame_bgr, result, labels)
