"""Video object segmentation metrics as DAVIS defines them: region similarity J and boundary accuracy F.

* J: the IoU of a predicted and a true mask; 1 when both are empty.
* F: the F-measure of boundary pixels. A predicted boundary pixel counts as matched when a true boundary pixel
  lies within ``bound_th`` of the image diagonal (0.008, rounded up to whole pixels, as a disk), and the other
  way round for recall. Boundaries are DAVIS's ``seg2bmap`` (a pixel differing from its right, lower or
  lower-right neighbour).

J&F of a clip is the mean over its objects and frames of (J + F) / 2, in points (0-100).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    if pred.ndim != 2 or pred.shape != truth.shape:
        raise ValueError(f"masks must be 2-D and alike, got {pred.shape} and {truth.shape}")
    return pred, truth


def region_similarity(pred: np.ndarray, truth: np.ndarray) -> float:
    """J: intersection over union of two (H, W) masks; 1.0 when both are empty."""
    pred, truth = _check_pair(pred, truth)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that differ from their right, lower or lower-right neighbour (DAVIS's seg2bmap at
    the mask's own size)."""
    seg = np.asarray(mask).astype(bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius: radius + 1, -radius: radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_accuracy(pred: np.ndarray, truth: np.ndarray, bound_th: float = 0.008) -> float:
    """F: the boundary F-measure of two (H, W) masks; ``bound_th`` < 1 is a fraction of the diagonal,
    otherwise pixels."""
    pred, truth = _check_pair(pred, truth)
    radius = int(bound_th if bound_th >= 1 else np.ceil(bound_th * np.hypot(*pred.shape)))
    pred_b, truth_b = boundary_map(pred), boundary_map(truth)
    n_pred, n_truth = int(pred_b.sum()), int(truth_b.sum())
    if n_pred == 0 or n_truth == 0:
        # DAVIS: both empty is perfect; one empty has precision or recall 0, so F is 0
        return 1.0 if n_pred == n_truth else 0.0
    disk = _disk(radius)
    truth_near = cv2.dilate(truth_b.astype(np.uint8), disk) > 0
    pred_near = cv2.dilate(pred_b.astype(np.uint8), disk) > 0
    precision = (pred_b & truth_near).sum() / n_pred
    recall = (truth_b & pred_near).sum() / n_truth
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def j_and_f(pairs: Iterable[tuple[np.ndarray, np.ndarray]], bound_th: float = 0.008) -> dict[str, float]:
    """J, F and J&F in points over (predicted, true) mask pairs: every object on every evaluated frame."""
    js, fs = [], []
    for pred, truth in pairs:
        js.append(region_similarity(pred, truth))
        fs.append(boundary_accuracy(pred, truth, bound_th))
    if not js:
        raise ValueError("no masks to evaluate")
    j, f = 100 * float(np.mean(js)), 100 * float(np.mean(fs))
    return {"J": j, "F": f, "J&F": (j + f) / 2}
