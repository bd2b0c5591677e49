"""Latency statistics in constant memory: a log-spaced histogram per stage (2 % bins), whatever the run length."""

from __future__ import annotations

import math

import numpy as np

_LO_MS, _HI_MS, _RATIO = 0.001, 1e6, 1.02
_NBINS = int(math.log(_HI_MS / _LO_MS) / math.log(_RATIO)) + 2


class LatencyHistogram:
    """Quantiles within 2 % of the true value, from a fixed ~1,400-bin histogram."""

    def __init__(self) -> None:
        self.counts = np.zeros(_NBINS, np.int64)
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        b = 0 if ms <= _LO_MS else min(_NBINS - 1, int(math.log(ms / _LO_MS) / math.log(_RATIO)) + 1)
        self.counts[b] += 1
        self.n += 1
        self.total += ms
        self.max = max(self.max, ms)

    def quantile(self, q: float) -> float:
        if self.n == 0:
            return float("nan")
        idx = int(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))
        if idx == 0:
            return _LO_MS
        # geometric middle of the bin
        return min(_LO_MS * _RATIO ** (idx - 0.5), self.max)

    def summary(self) -> dict[str, float]:
        if self.n == 0:
            return {"count": 0}
        return {"count": self.n, "mean_ms": round(self.total / self.n, 3), "p50_ms": round(self.quantile(0.5), 3),
                "p90_ms": round(self.quantile(0.9), 3), "p99_ms": round(self.quantile(0.99), 3),
                "max_ms": round(self.max, 3)}
