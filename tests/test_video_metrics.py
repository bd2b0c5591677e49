"""J and F as DAVIS defines them, against a direct pixel-by-pixel implementation."""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.ops.video_metrics import boundary_accuracy, boundary_map, j_and_f, region_similarity


def slow_boundary(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                out[y, x] = mask[y, x] != mask[y, x + 1]
            elif x == w - 1:
                out[y, x] = mask[y, x] != mask[y + 1, x]
            else:
                out[y, x] = any(mask[y, x] != mask[y + dy, x + dx] for dy, dx in ((0, 1), (1, 0), (1, 1)))
    return out


def slow_f(pred: np.ndarray, truth: np.ndarray, radius: int) -> float:
    pb, tb = np.argwhere(slow_boundary(pred)), np.argwhere(slow_boundary(truth))
    if len(pb) == 0 or len(tb) == 0:
        return 1.0 if len(pb) == len(tb) else 0.0
    d = np.sqrt(((pb[:, None, :] - tb[None, :, :]) ** 2).sum(-1))
    precision, recall = (d.min(1) <= radius).mean(), (d.min(0) <= radius).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def blob(h, w, cy, cx, ry, rx):
    y, x = np.mgrid[:h, :w]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def test_against_a_direct_implementation():
    rng = np.random.default_rng(0)
    for _ in range(12):
        h, w = rng.integers(20, 48, 2)
        pred = blob(h, w, *rng.uniform(5, 20, 2), *rng.uniform(3, 12, 2))
        truth = blob(h, w, *rng.uniform(5, 20, 2), *rng.uniform(3, 12, 2))
        assert np.array_equal(boundary_map(pred), slow_boundary(pred))
        radius = int(np.ceil(0.008 * np.hypot(h, w)))
        assert boundary_accuracy(pred, truth) == pytest.approx(slow_f(pred, truth, radius), abs=1e-12)
        assert boundary_accuracy(pred, truth, bound_th=3) == pytest.approx(slow_f(pred, truth, 3), abs=1e-12)
        inter, union = (pred & truth).sum(), (pred | truth).sum()
        assert region_similarity(pred, truth) == pytest.approx(inter / union)


def test_edge_cases_follow_davis():
    empty, square = np.zeros((30, 30), bool), np.zeros((30, 30), bool)
    square[5:15, 5:15] = True
    assert region_similarity(empty, empty) == 1.0 and boundary_accuracy(empty, empty) == 1.0
    assert region_similarity(square, empty) == 0.0 and boundary_accuracy(square, empty) == 0.0
    assert boundary_accuracy(empty, square) == 0.0
    far = np.zeros((30, 30), bool)
    far[20:28, 20:28] = True
    assert boundary_accuracy(square, far) == 0.0
    assert j_and_f([(square, square), (empty, empty)]) == {"J": 100.0, "F": 100.0, "J&F": 100.0}
    with pytest.raises(ValueError, match="alike"):
        region_similarity(square, np.zeros((30, 31), bool))
    with pytest.raises(ValueError, match="no masks"):
        j_and_f([])
