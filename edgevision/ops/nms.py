"""GPU-free non-maximum suppression on the CPU.

ONNX Runtime's CPU NonMaxSuppression kernel is the fastest option measured on the dev machine (an order of
magnitude ahead of cv2.dnn.NMSBoxesBatched and greedy NumPy), so the kernel runs through a one-node ONNX
graph shipped with the package (scripts/make_nms_onnx.py), and the NumPy around it only filters and ranks.
Class-aware NMS shifts each class's boxes to a disjoint region, so a single kernel call serves all classes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

_GRAPH = Path(__file__).with_name("nms.onnx")
_local = threading.local()  # one session per thread: pipeline stages call NMS concurrently


def _session():
    sess = getattr(_local, "session", None)
    if sess is None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(_GRAPH), opts, providers=["CPUExecutionProvider"])
        _local.session = sess
        _local.iou = {}
        _local.max_out = {}
    return sess


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None = None,
    *,
    iou_threshold: float = 0.45,
    score_threshold: float = 0.0,
    max_detections: int = 300,
    top_k: int = 3000,
    class_agnostic: bool = False,
) -> np.ndarray:
    """Indices of the boxes to keep, best score first.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,).
        class_ids: (N,) integer class of each box; required unless ``class_agnostic``.
        iou_threshold: a box is suppressed by a better one of its class overlapping it by more than this.
        score_threshold: boxes scoring at or below this are dropped first.
        max_detections: at most this many indices are returned.
        top_k: only the ``top_k`` best-scoring boxes enter the kernel.
        class_agnostic: suppress across classes.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must be ({boxes.shape[0]},), got shape {scores.shape}")
    if not class_agnostic and class_ids is None:
        raise ValueError("class_ids is required for class-aware NMS (or pass class_agnostic=True)")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_detections < 1 or top_k < 1:
        raise ValueError("max_detections and top_k must be positive")

    idx = np.flatnonzero(scores > score_threshold)
    if idx.size == 0:
        return idx
    if idx.size > top_k:
        part = np.argpartition(scores[idx], idx.size - top_k)[idx.size - top_k :]
        idx = idx[part]
    sel_boxes = boxes[idx].astype(np.float32, copy=False)
    if not class_agnostic:
        # Shift every class into its own square of side `span`, so boxes of different classes never overlap.
        span = float(sel_boxes.max() - min(sel_boxes.min(), 0.0)) + 1.0
        sel_boxes = sel_boxes + (np.asarray(class_ids)[idx].astype(np.float32) * span)[:, None]
    sess = _session()
    iou = _local.iou.get(iou_threshold)
    if iou is None:
        iou = _local.iou[iou_threshold] = np.array([iou_threshold], np.float32)
    max_out = _local.max_out.get(max_detections)
    if max_out is None:
        max_out = _local.max_out[max_detections] = np.array([max_detections], np.int64)
    keep = sess.run(None, {
        "boxes": sel_boxes[None],
        "scores": scores[idx].astype(np.float32, copy=False)[None, None],
        "max_output": max_out,
        "iou_threshold": iou,
    })[0][:, 2]
    return idx[keep]
