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
def _decode_tables(grid: int, boxes_per_cell: int, depth: int, imgsz: int):
    """Constants of one head shape, built once.

    Returns ``rows`` (S*S*B,): each box's row in the output viewed as (S*S*depth/5, 5); ``affine`` (5, 4): maps a
    box row (x, y, w, h, conf) to xyxy in network pixels, before the cell origin is added; ``origins``
    (S*S*B, 4): each box's cell origin in network pixels, as (x, y, x, y); ``cells`` (S*S,): arange.
    """
    cell = imgsz / grid
    half = imgsz / 2
    affine = np.array([[cell, 0, cell, 0], [0, cell, 0, cell], [-half, 0, half, 0], [0, -half, 0, half],
                       [0, 0, 0, 0]], np.float32)
    cells = np.arange(grid * grid)
    row, col = np.divmod(cells, grid)
    origins = np.repeat(np.stack([col, row, col, row], -1).astype(np.float32) * np.float32(cell),
                        boxes_per_cell, axis=0)
    rows = (cells[:, None] * (depth // 5) + np.arange(boxes_per_cell)).ravel()
    return rows, affine, origins, cells


def decode_yolov1(
    pred: np.ndarray, *, grid: int, boxes_per_cell: int, num_classes: int, imgsz: int,
    score_threshold: float = 0.0, sqrt_wh: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (S, S, B*5+C) output -> (boxes xyxy in network pixels, scores, class ids) above threshold.

    Written for per-call overhead, which dominates at YOLOv1 sizes: every step is one NumPy call on a view or
    a cached table, and the geometry of all kept boxes is a single (K, 5) @ (5, 4) product.
    """
    b = boxes_per_cell
    depth = b * 5 + num_classes
    if pred.shape != (grid, grid, depth):
        raise ValueError(f"expected a ({grid}, {grid}, {depth}) YOLOv1 output, got {pred.shape}")
    pred = np.ascontiguousarray(pred, dtype=np.float32)
    rows, affine, origins, cells = _decode_tables(grid, b, depth, imgsz)
    flat = pred.reshape(grid * grid, depth)
    cls = flat[:, b * 5 :].argmax(1)
    best = flat[cells, cls + b * 5]
    scores = (flat[:, 4 : b * 5 : 5] * best[:, None]).ravel()  # (S*S*B,), box-major within a cell
    keep = np.flatnonzero(scores > score_threshold)
    if depth % 5 == 0:  # every box is a row of the output viewed as (-1, 5)
        sel = pred.reshape(-1, 5)[rows[keep]]
    else:
        sel = flat[:, : b * 5].reshape(grid * grid * b, 5)[keep]
    if sqrt_wh:
        sel[:, 2:4] *= sel[:, 2:4]
    xyxy = sel @ affine
    xyxy += origins[keep]
    return xyxy, scores[keep], cls[keep // b]


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
                                   max_detections=self.max_detections, class_agnostic=self.class_agnostic,
                                   coordinate_span=4.0 * self.imgsz)  # sigmoid boxes stay within [-imgsz/2, 1.5 imgsz]
        boxes = boxes[keep]
        if geometry is not None:
            boxes = geometry.boxes_to_source(boxes)
        return Detections(boxes.astype(np.float32, copy=False), scores[keep].astype(np.float32, copy=False),
                          cls[keep].astype(np.int64, copy=False))
