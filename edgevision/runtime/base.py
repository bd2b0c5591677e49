"""The one small interface every backend implements, and the lookup that picks a backend for a bundle."""

from __future__ import annotations

import importlib
import logging
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from edgevision.errors import BadInput, MissingDependency

if TYPE_CHECKING:
    from edgevision.bundle import Bundle

log = logging.getLogger("edgevision")

# runtime name -> "module:Class"; a new backend is a new module plus one line here.
RUNTIMES = {
    "onnxruntime": "edgevision.runtime.onnxruntime:OnnxRuntimeRunner",
    "openvino": "edgevision.runtime.openvino:OpenVINORunner",
    "litert": "edgevision.runtime.litert:LiteRTRunner",
    "tensorrt": "edgevision.runtime.tensorrt:TensorRTRunner",
}

# The Python module each runtime needs, and the extra that installs it.
RUNTIME_EXTRAS = {
    "onnxruntime": ("onnxruntime", "cpu"),
    "openvino": ("openvino", "intel-npu"),
    "litert": ("ai_edge_litert", "rpi"),
    "tensorrt": ("tensorrt", "jetson"),
}


class Runner(ABC):
    """Runs a bundle's artifact: uint8 NHWC batch in, list of float32 arrays out (in the bundle's order)."""

    runtime: str = ""
    device: str = "CPU"
    # Largest batch ``run`` takes at once. Artifacts have a static batch of 1; the PyTorch reference takes
    # more, which evaluation uses (eager PyTorch at batch 1 is mostly per-op overhead).
    max_batch: int = 1

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        self.bundle = bundle
        self.threads = threads or bundle_default_threads(bundle)

    @abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """(N, H, W, 3) uint8 -> outputs, each with a leading batch dimension."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing to release
        pass

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict:
        return {"runtime": self.runtime, "device": self.device, "threads": self.threads}


def run_in_batches(runner, batch: np.ndarray) -> list[np.ndarray]:
    """``batch`` through ``runner`` in pieces of its ``max_batch``; outputs concatenated along the batch.
    Duck-typed runners without ``max_batch`` take one image at a time."""
    step = getattr(runner, "max_batch", 1)
    if len(batch) <= step:
        return runner.run(batch)
    parts = [runner.run(batch[i : i + step]) for i in range(0, len(batch), step)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def bundle_default_threads(bundle: Bundle) -> int:
    """The profile's inference threads, never more than this machine has cores."""
    from edgevision.config import get_target

    cores = os.cpu_count() or 1
    try:
        return min(get_target(bundle.meta.target).threads, cores)
    except BadInput:
        return min(4, cores)


def allowed_runtimes(bundle: Bundle) -> list[str]:
    from edgevision.config import get_target

    return list(get_target(bundle.meta.target).runtimes)


def open_runner(bundle: Bundle, runtime: str | None = None, threads: int | None = None) -> Runner:
    """The runner for ``bundle``: ``runtime`` if given (it must be allowed for the bundle's target), else the
    first allowed runtime that is installed."""
    allowed = allowed_runtimes(bundle)
    if runtime is not None:
        if runtime not in allowed:
            raise BadInput(f"runtime '{runtime}' cannot run a {bundle.meta.target} bundle; "
                           f"allowed: {', '.join(allowed)}")
        candidates = [runtime]
    else:
        candidates = [r for r in allowed if r in RUNTIMES]
    missing = None
    for name in candidates:
        module, _, cls = RUNTIMES[name].partition(":")
        try:
            return getattr(importlib.import_module(module), cls)(bundle, threads)
        except MissingDependency as e:
            if runtime is not None:
                raise
            missing = missing or e
            log.info("%s not available here (%s); trying the next allowed runtime", name, e)
    if missing:
        raise missing
    raise BadInput(f"no runtime available here for a {bundle.meta.target} bundle; allowed: {', '.join(allowed)}")


def require(module: str, runtime: str, purpose: str = ""):
    """Import an optional runtime module or raise MissingDependency naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        _, extra = RUNTIME_EXTRAS.get(runtime, (module, runtime))
        raise MissingDependency(module, extra, purpose or f"the {runtime} runtime") from None
