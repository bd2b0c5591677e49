"""Semantic segmentation: a class per pixel (0 = background); mIoU and Dice over the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevision.data.shapes import SHAPE_CLASSES
from edgevision.ops.results import Segmentation
from edgevision.tasks.base import Accumulator, Task


class SegmentationAccumulator(Accumulator):
    def __init__(self, num_classes: int) -> None:
        self.n = num_classes
        self.conf = np.zeros((num_classes, num_classes), np.int64)

    def add(self, truth, result: Segmentation) -> None:
        from edgevision.check.metrics import confusion_matrix

        reference = truth.label_map if isinstance(truth, Segmentation) else truth.semantic
        self.conf += confusion_matrix(reference, result.label_map, self.n)

    def result(self) -> dict[str, float]:
        from edgevision.check.metrics import segmentation_scores

        return segmentation_scores(self.conf)


def _softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """(N, C, H, W) logits -> (N, H, W) probability of the argmax class."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (1.0 / e.sum(1)).astype(np.float32)  # exp(0) / sum


class SegmentTask(Task):
    name = "segment"
    result_type = Segmentation
    postprocessors = {"semantic": "edgevision.ops.masks:SemanticPostprocessor"}
    agreement = ("miou", "agreement_miou")
    json_key = "segmentation"
    needs_masks = True
    plot_marker = "s"
    default_recipe = "default-segment.yaml"
    synthetic_labels = ("background", *SHAPE_CLASSES)

    def accumulator(self, labels: Sequence[str], recipe) -> SegmentationAccumulator:
        return SegmentationAccumulator(len(labels))

    def golden_arrays(self, graph, outputs):
        """Per-pixel class scores are stored reduced (the size budget): argmax plus the winner's probability."""
        stored = {}
        for name, out in outputs.items():
            if out.ndim == 4:
                stored[f"argmax.{name}"] = out.argmax(1).astype(np.uint8)
                stored[f"confidence.{name}"] = _softmax_confidence(out).astype(np.float16)
            else:
                stored[name] = out.astype(np.float16)
        return stored

    def golden_similarity(self, graph, stored, i, outputs):
        art = {k: v for k, v in self.golden_arrays(graph, outputs).items() if not k.startswith("argmax.")}
        return ({k: stored[k][i : i + 1].astype(np.float32) for k in art},
                {k: v.astype(np.float32) for k, v in art.items()})

    def golden_results(self, stored, i, outputs, post):
        name = next(k for k, v in outputs.items() if v.ndim == 4)
        return Segmentation(stored[f"argmax.{name}"][i]), Segmentation(outputs[name][0].argmax(0).astype(np.uint8))

    def draw(self, frame_bgr: np.ndarray, result: Segmentation, labels: Sequence[str]) -> np.ndarray:
        from edgevision.pipeline.render import draw_segmentation

        return draw_segmentation(frame_bgr, result, labels)
