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
_OUTPUTS = ["selected"]
_NO_THRESHOLD = float(np.finfo(np.float32).min)
_local = threading.local()  # one session per thread: pipeline stages call NMS concurrently


class _Cache:
    """A thread's ONNX Runtime session plus the small constant inputs, built once."""

    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(_GRAPH), opts, providers=["CPUExecutionProvider"])
        # InferenceSession.run re-validates the feed's names on every call, which costs about 3 us of the
        # 15-20 us a 98-box call takes. The feed here always matches the graph, so call the binding under it
        # when this ONNX Runtime has one (every release so far); otherwise the public run.
        self.run = self.session.run
        inner = getattr(self.session, "_sess", None)
        if inner is not None:
            probe = {"boxes": np.zeros((1, 1, 4), np.float32), "scores": np.ones((1, 1, 1), np.float32),
                     "max_output": np.array([1], np.int64), "iou_threshold": np.array([0.5], np.float32),
                     "score_threshold": np.array([0.0], np.float32)}
            try:  # a future ONNX Runtime may change the binding's signature: then stay on the public call
                inner.run(_OUTPUTS, probe, None)
                self.run = lambda names, feeds: inner.run(names, feeds, None)
            except Exception:  # noqa: BLE001
                pass
        self._scalar: dict[float, np.ndarray] = {}
        self._max: dict[int, np.ndarray] = {}

    def scalar(self, value: float) -> np.ndarray:
        arr = self._scalar.get(value)
        if arr is None:
            arr = self._scalar[value] = np.array([value], np.float32)
        return arr

    def max_out(self, value: int) -> np.ndarray:
        arr = self._max.get(value)
        if arr is None:
            arr = self._max[value] = np.array([value], np.int64)
        return arr


def _cache() -> _Cache:
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = _Cache()
    return cache


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None = None,
    *,
    iou_threshold: float = 0.45,
    score_threshold: float | None = 0.0,
    max_detections: int = 300,
    top_k: int = 3000,
    class_agnostic: bool = False,
    coordinate_span: float | None = None,
) -> np.ndarray:
    """Indices of the boxes to keep, best score first.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,).
        class_ids: (N,) integer class of each box; required unless ``class_agnostic``.
        iou_threshold: a box is suppressed by a better one of its class overlapping it by more than this.
        score_threshold: boxes scoring at or below this are dropped first (None: the caller already did).
        max_detections: at most this many indices are returned.
        top_k: only the ``top_k`` best-scoring boxes enter the kernel.
        class_agnostic: suppress across classes.
        coordinate_span: an upper bound on max - min over all coordinates, when the caller knows one (the YOLO
            decode does); it saves a pass over the boxes.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must be ({boxes.shape[0]},), got shape {scores.shape}")
    if not class_agnostic:
        if class_ids is None:
            raise ValueError("class_ids is required for class-aware NMS (or pass class_agnostic=True)")
        if np.shape(class_ids) != scores.shape:
            raise ValueError(f"class_ids must be ({boxes.shape[0]},), got shape {np.shape(class_ids)}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_detections < 1 or top_k < 1:
        raise ValueError("max_detections and top_k must be positive")

    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    idx = None
    if n > top_k:  # the best top_k are a superset of the best top_k above any threshold
        idx = np.argpartition(scores, n - top_k)[n - top_k :]
        boxes, scores = boxes[idx], scores[idx]
        if class_ids is not None:
            class_ids = np.asarray(class_ids)[idx]
    if boxes.dtype != np.float32:
        boxes = boxes.astype(np.float32)
    if not class_agnostic:
        # Shift every class into its own square of side `span`, so boxes of different classes never overlap.
        if coordinate_span is None:  # one reduction: all coordinates lie in [-m, m], so 2m + 1 separates classes
            coordinate_span = 2.0 * float(np.abs(boxes).max()) + 1.0
        boxes = boxes + np.multiply(class_ids, coordinate_span, dtype=np.float32)[:, None]
    cache = _cache()
    feeds = {
        "boxes": boxes[None],
        "scores": scores.astype(np.float32, copy=False)[None, None],
        "max_output": cache.max_out(max_detections),
        "iou_threshold": cache.scalar(iou_threshold),
        # The kernel drops scores <= threshold itself, which is cheaper than a NumPy filter and gather.
        "score_threshold": cache.scalar(_NO_THRESHOLD if score_threshold is None else score_threshold),
    }
    keep = cache.run(_OUTPUTS, feeds)[0][:, 2]
    return keep if idx is None else idx[keep]
