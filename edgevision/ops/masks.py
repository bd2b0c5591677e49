"""Segmentation postprocessing: per-pixel logits/probabilities -> label map in source pixels."""

from __future__ import annotations

import numpy as np

from edgevision.ops.preprocess import Geometry
from edgevision.ops.results import Segmentation


def label_map_from_logits(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) scores -> (H, W) uint8 argmax."""
    if logits.ndim != 3:
        raise ValueError(f"expected (C, H, W) class scores, got shape {logits.shape}")
    return logits.argmax(0).astype(np.uint8)


class SemanticPostprocessor:
    def __init__(self, head: dict, imgsz: int, **_: object) -> None:
        self.head = head
        self.imgsz = imgsz

    def __call__(self, outputs: dict[str, np.ndarray], geometry: Geometry | None = None) -> Segmentation:
        """``outputs``: the graph's outputs for one image, by name (batch dimension removed)."""
        label_map = label_map_from_logits(outputs[self.head.get("output", "output")])
        if geometry is not None:
            label_map = geometry.map_to_source(label_map)
        return Segmentation(label_map)


def colourise(label_map: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 colours; label 0 stays black."""
    return palette[np.minimum(label_map, len(palette) - 1)]


def palette(n: int) -> np.ndarray:
    """n distinct RGB colours (index 0 black), stable across runs."""
    rng = np.random.default_rng(12345)
    cols = rng.integers(64, 256, (max(n, 1), 3)).astype(np.uint8)
    cols[0] = 0
    return cols
