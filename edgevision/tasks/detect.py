"""Object detection: boxes, scores and classes; mAP@0.5 and mAP@0.5:0.95 (COCO style, faster-coco-eval)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevision.data.shapes import SHAPE_CLASSES
from edgevision.ops.results import Detections
from edgevision.tasks.base import Accumulator, Task

EVAL_CONF = 0.001  # mAP is computed over the whole score range
EVAL_MAX_DETECTIONS = 100


class DetectionAccumulator(Accumulator):
    """Ground truth from a Sample's boxes, or from a reference runner's detections above ``score_threshold``."""

    def __init__(self, num_classes: int, score_threshold: float) -> None:
        self.num_classes, self.score_threshold = num_classes, score_threshold
        self.gt_boxes: list[np.ndarray] = []
        self.gt_labels: list[np.ndarray] = []
        self.preds: list[Detections] = []

    def add(self, truth, result: Detections) -> None:
        if isinstance(truth, Detections):
            keep = truth.scores >= self.score_threshold
            self.gt_boxes.append(truth.boxes[keep])
            self.gt_labels.append(truth.class_ids[keep])
        else:
            self.gt_boxes.append(truth.boxes)
            self.gt_labels.append(truth.labels)
        self.preds.append(result)

    def result(self) -> dict[str, float]:
        from edgevision.check.metrics import detection_map

        return detection_map(self.gt_boxes, self.gt_labels, self.preds, self.num_classes)


class DetectTask(Task):
    name = "detect"
    result_type = Detections
    postprocessors = {"yolov1": "edgevision.ops.yolo:YoloV1Postprocessor"}
    agreement = ("map50", "agreement_map50")
    json_key = "detections"
    plot_marker = "o"
    default_recipe = "default-detect.yaml"
    synthetic_labels = SHAPE_CLASSES

    def run_options(self, recipe, conf: float | None = None, iou: float | None = None, **_) -> dict:
        return {"conf": recipe.conf_threshold if conf is None else conf,
                "iou": recipe.iou_threshold if iou is None else iou}

    def eval_options(self, recipe) -> dict:
        return {"conf": EVAL_CONF, "iou": recipe.iou_threshold, "max_detections": EVAL_MAX_DETECTIONS}

    def accumulator(self, labels: Sequence[str], recipe) -> DetectionAccumulator:
        return DetectionAccumulator(len(labels), recipe.agreement_score_threshold)

    def draw(self, frame_bgr: np.ndarray, result: Detections, labels: Sequence[str]) -> np.ndarray:
        from edgevision.pipeline.render import draw_detections

        return draw_detections(frame_bgr, result, labels)
