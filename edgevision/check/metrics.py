"""Accuracy metrics, all in percent (0-100).

mAP comes from faster-coco-eval (the COCO protocol, 101-point interpolation), never from a hand-written
evaluator. Segmentation metrics come from a pixel confusion matrix.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np

from edgevision.errors import MissingDependency
from edgevision.ops.results import Detections


def _coco():
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:
        raise MissingDependency("faster_coco_eval", "cpu", "mAP in `edgevision check`") from None
    return COCO, COCOeval_faster


def detection_map(
    gt_boxes: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray], predictions: Sequence[Detections],
    num_classes: int,
) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@0.5:0.95 over a set of images.

    Args:
        gt_boxes: per image (G, 4) xyxy pixels.
        gt_labels: per image (G,) class ids in [0, num_classes).
        predictions: per image detections in the same pixel space.
    """
    if not (len(gt_boxes) == len(gt_labels) == len(predictions)):
        raise ValueError("gt_boxes, gt_labels and predictions must have one entry per image")
    COCO, COCOeval = _coco()
    images, annotations, results = [], [], []
    for i, (boxes, labels, det) in enumerate(zip(gt_boxes, gt_labels, predictions)):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for b, c in zip(np.asarray(boxes, np.float64).reshape(-1, 4), labels):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                                "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, s, c in zip(det.boxes.astype(np.float64), det.scores, det.class_ids):
            results.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    if not annotations:
        return {"map50": float("nan"), "map50_95": float("nan")}
    if not results:
        return {"map50": 0.0, "map50_95": 0.0}
    gt = COCO({"images": images, "annotations": annotations,
               "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]})
    dt = gt.loadRes(results)
    ev = COCOeval(gt, dt, "bbox", print_function=lambda *a, **k: None)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map50": round(100 * max(float(ev.stats[1]), 0.0), 3), "map50_95": round(100 * max(float(ev.stats[0]), 0.0), 3)}


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) pixel counts, rows = ground truth, columns = prediction."""
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"label maps differ in size: {gt.shape} vs {pred.shape}")
    valid = (gt >= 0) & (gt < num_classes)
    return np.bincount(gt[valid] * num_classes + pred[valid], minlength=num_classes**2).reshape(num_classes, -1)


def segmentation_scores(conf: np.ndarray) -> dict[str, float]:
    """mIoU and mean Dice over the classes that occur in ground truth or prediction."""
    tp = np.diag(conf).astype(np.float64)
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    present = (tp + fp + fn) > 0
    if not present.any():
        return {"miou": float("nan"), "dice": float("nan")}
    iou = tp[present] / (tp + fp + fn)[present]
    dice = 2 * tp[present] / (2 * tp + fp + fn)[present]
    return {"miou": round(100 * float(iou.mean()), 3), "dice": round(100 * float(dice.mean()), 3)}


class OutputSimilarity:
    """Streams reference/artifact output pairs, keyed by output name; reports cosine, max abs error and SQNR (dB)
    per output."""

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {}  # name -> [r.a, r.r, a.a, d.d, max |d|]

    def add(self, reference: Mapping[str, np.ndarray], artifact: Mapping[str, np.ndarray]) -> None:
        for name, r in reference.items():
            r = np.asarray(r, np.float64).ravel()
            a = np.asarray(artifact[name], np.float64).ravel()
            d = r - a
            s = self._sums.setdefault(name, [0.0] * 5)
            s[0] += float(r @ a)
            s[1] += float(r @ r)
            s[2] += float(a @ a)
            s[3] += float(d @ d)
            s[4] = max(s[4], float(np.abs(d).max(initial=0.0)))

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, (dot, ref2, art2, err2, worst) in self._sums.items():
            denom = np.sqrt(ref2 * art2)
            cos = dot / denom if denom > 0 else (1.0 if err2 == 0 else 0.0)
            sqnr = 10 * np.log10(ref2 / err2) if err2 > 0 else float("inf")
            out[name] = {"cosine": round(float(cos), 6), "max_abs_error": round(worst, 6),
                         "sqnr_db": round(float(sqnr), 2)}
        return out
