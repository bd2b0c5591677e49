"""Splitting a batch for runners that take fewer items at once. Imports nothing of edgevision, so tasks and
check can use it without reaching the backend lookup (and its profiles)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def run_in_batches(runner, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` through ``runner`` in pieces of its ``max_batch`` along the leading dimension; outputs
    concatenated along it. Duck-typed runners without ``max_batch`` take one item at a time."""
    step = getattr(runner, "max_batch", 1)
    n = len(next(iter(feeds.values())))
    if n <= step:
        return runner.run(graph, feeds)
    parts = [runner.run(graph, {k: v[i : i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
