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
def _decode_tables(grid: int, boxes_per_cell: int, depth: int, imgsz: int, sqrt_wh: bool):
    """Constants of one head shape, built once.

    Returns ``geometry`` (2*B*5, B*4) if ``sqrt_wh`` else (B*5, B*4): maps a cell's box columns (x, y, w, h,
    conf per box), followed by their squares when w and h are predicted as square roots, to the xyxy of its B
    boxes in network pixels, before the cell origin is added; ``origins`` (S*S, B*4): each cell's origin as
    (x, y, x, y) per box; ``prob_start`` (S*S,): where each cell's class probabilities start in the flat
    output; ``conf_index`` (S*S, B): where each box's confidence is in the flat output.
    """
    cell = imgsz / grid
    half = imgsz / 2
    position = np.array([[cell, 0, cell, 0], [0, cell, 0, cell]], np.float32)
    size = np.array([[-half, 0, half, 0], [0, -half, 0, half]], np.float32)
    b5 = boxes_per_cell * 5
    geometry = np.zeros((2 * b5 if sqrt_wh else b5, boxes_per_cell * 4), np.float32)
    for i in range(boxes_per_cell):
        cols = slice(4 * i, 4 * i + 4)
        geometry[5 * i : 5 * i + 2, cols] = position
        size_rows = 5 * i + 2 + (b5 if sqrt_wh else 0)
        geometry[size_rows : size_rows + 2, cols] = size
    cells = np.arange(grid * grid)
    row, col = np.divmod(cells, grid)
    origins = np.tile(np.stack([col, row, col, row], -1).astype(np.float32) * np.float32(cell), (1, boxes_per_cell))
    prob_start = cells * depth + b5
    conf_index = cells[:, None] * depth + np.arange(boxes_per_cell) * 5 + 4
    return geometry, origins, prob_start, conf_index


def decode_yolov1(
    pred: np.ndarray, *, grid: int, boxes_per_cell: int, num_classes: int, imgsz: int,
    score_threshold: float = 0.0, sqrt_wh: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (S, S, B*5+C) output -> (boxes xyxy in network pixels, scores, class ids) above threshold.

    Written for per-call overhead, which dominates at YOLOv1 sizes (98 boxes): every step is one NumPy call on
    a view or a cached table, gathers use ``ndarray.take`` (several times cheaper than fancy indexing on small
    arrays), and the geometry of all boxes is a single (S*S, 2*B*5) @ (2*B*5, B*4) product over the box
    columns and their squares, computed for every box because that is cheaper than gathering the kept ones first.
    """
    b = boxes_per_cell
    depth = b * 5 + num_classes
    if pred.shape != (grid, grid, depth):
        raise ValueError(f"expected a ({grid}, {grid}, {depth}) YOLOv1 output, got {pred.shape}")
    pred = np.ascontiguousarray(pred, dtype=np.float32)
    geometry, origins, prob_start, conf_index = _decode_tables(grid, b, depth, imgsz, sqrt_wh)
    flat = pred.reshape(grid * grid, depth)
    values = pred.reshape(-1)
    cls = flat[:, b * 5 :].argmax(1)
    scores = values.take(conf_index)  # (S*S, B)
    scores *= values.take(cls + prob_start)[:, None]
    scores = scores.reshape(-1)  # box-major within a cell
    keep = (scores > score_threshold).nonzero()[0]
    box_columns = flat[:, : b * 5]
    if sqrt_wh:
        box_columns = np.concatenate((box_columns, box_columns * box_columns), 1)
    xyxy = box_columns @ geometry
    xyxy += origins
    return xyxy.reshape(-1, 4).take(keep, 0), scores.take(keep), cls.take(keep // b)


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

    def __call__(self, outputs: dict[str, np.ndarray], geometry: Geometry | None = None) -> Detections:
        """``outputs``: the graph's outputs for one image, by name (batch dimension removed)."""
        boxes, scores, cls = decode_yolov1(
            outputs[self.head.get("output", "output")], grid=self.head["grid"], boxes_per_cell=self.head["boxes_per_cell"],
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
