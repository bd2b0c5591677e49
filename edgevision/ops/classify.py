"""Classification postprocessing: logits -> the top K classes with softmax probabilities."""

from __future__ import annotations

import numpy as np

from edgevision.ops.preprocess import Geometry
from edgevision.ops.results import Classification


def softmax(logits: np.ndarray) -> np.ndarray:
    """(C,) logits -> (C,) probabilities, computed in float64 so that tiny probabilities keep their digits."""
    z = np.asarray(logits, np.float64).ravel()
    e = np.exp(z - z.max())
    return e / e.sum()


class ClassifyPostprocessor:
    def __init__(self, head: dict, imgsz: int, *, top_k: int = 5, **_: object) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.head = head
        self.top_k = top_k

    def __call__(self, outputs: dict[str, np.ndarray], geometry: Geometry | None = None) -> Classification:
        """``outputs``: the graph's outputs for one image, by name (batch dimension removed); ``logits`` (C,)."""
        logits = outputs[self.head.get("output", "logits")]
        if logits.ndim != 1:
            raise ValueError(f"expected (C,) logits, got shape {logits.shape}")
        probs = softmax(logits)
        k = min(self.top_k, len(probs))
        top = np.argsort(-probs, kind="stable")[:k]
        return Classification(top.astype(np.int64), probs[top].astype(np.float32), probs.astype(np.float32))
