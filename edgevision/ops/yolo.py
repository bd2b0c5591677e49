"""YOLOv1 grid decode: (S, S, B*5 + C) predictions -> boxes, scores and classes, then NMS.

Per cell and box: x, y are offsets within the cell, w and h are relative to the image and predicted as their
square roots (darknet ``sqrt=1``), and a box's class score is its confidence times the cell's best class
probability, as in darknet's ``get_detection_detections``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgevision.ops.nms import non_max_suppression
from edgevision.ops.preprocess import Geometry
from edgevision.ops.results import Detections


@lru_cache(maxsize=16)
def _cell_origins(grid: int, boxes_per_cell: int) -> np.ndarray:
    """(S*S*B, 2) x, y of the top-left corner of each box's cell, in cells."""
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    xy = np.stack([cols, rows], -1).astype(np.float32)
    return np.repeat(xy, boxes_per_cell, axis=0)


def decode_yolov1(
    pred: np.ndarray, *, grid: int, boxes_per_cell: int, num_classes: int, imgsz: int,
    score_threshold: float = 0.0, sqrt_wh: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (S, S, B*5+C) output -> (boxes xyxy in network pixels, scores, class ids) above threshold."""
    b = boxes_per_cell
    if pred.shape != (grid, grid, b * 5 + num_classes):
        raise ValueError(f"expected a ({grid}, {grid}, {b * 5 + num_classes}) YOLOv1 output, got {pred.shape}")
    flat = pred.reshape(grid * grid, b * 5 + num_classes)
    box = flat[:, : b * 5].reshape(grid * grid, b, 5)
    probs = flat[:, b * 5 :]
    cls = probs.argmax(1)
    scores = (box[:, :, 4] * probs.max(1)[:, None]).ravel()  # (S*S*B,)
    keep = np.flatnonzero(scores > score_threshold)
    box = box.reshape(-1, 5)[keep]
    centre = (box[:, :2] + _cell_origins(grid, b)[keep]) * (imgsz / grid)
    half = (box[:, 2:4] * box[:, 2:4] if sqrt_wh else box[:, 2:4]) * (imgsz / 2)
    return np.hstack((centre - half, centre + half)), scores[keep], cls.repeat(b)[keep]


class YoloV1Postprocessor:
    """Decode + class-aware NMS, mapped back to source pixels."""

    def __init__(self, head: dict, imgsz: int, *, conf: float = 0.25, iou: float = 0.45,
                 max_detections: int = 100, class_agnostic: bool = False) -> None:
        self.head = head
        self.imgsz = imgsz
        self.conf = conf
        self.iou = iou
        self.max_detections = max_detections
        self.class_agnostic = class_agnostic

    def __call__(self, outputs: list[np.ndarray], geometry: Geometry | None = None) -> Detections:
        """``outputs``: the runner's outputs for one image (batch dimension removed)."""
        boxes, scores, cls = decode_yolov1(
            outputs[0], grid=self.head["grid"], boxes_per_cell=self.head["boxes_per_cell"],
            num_classes=self.head["num_classes"], imgsz=self.imgsz, score_threshold=self.conf,
            sqrt_wh=self.head.get("sqrt_wh", True),
        )
        if len(scores) == 0:
            return Detections.empty()
        keep = non_max_suppression(boxes, scores, cls, iou_threshold=self.iou, score_threshold=None,
                                   max_detections=self.max_detections, class_agnostic=self.class_agnostic)
        boxes = boxes[keep]
        if geometry is not None:
            boxes = geometry.boxes_to_source(boxes)
        return Detections(boxes.astype(np.float32, copy=False), scores[keep].astype(np.float32, copy=False),
                          cls[keep].astype(np.int64, copy=False))
