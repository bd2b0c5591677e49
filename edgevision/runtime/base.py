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
            runner_class = getattr(importlib.import_module(module), cls)
            return _load(runner_class, bundle, threads, name)
        except MissingDependency as e:
            if runtime is not None:
                raise
            missing = missing or e
            log.info("%s not available here (%s); trying the next allowed runtime", name, e)
    if missing:
        raise missing
    raise BadInput(f"no runtime available here for a {bundle.meta.target} bundle; allowed: {', '.join(allowed)}")


# Errors that mean a bug in edgevision, not a bad artifact: never reported as the user's fault.
_OUR_BUGS = (TypeError, AttributeError, NameError, KeyError, ImportError, AssertionError)


def _load(runner_class, bundle: Bundle, threads: int | None, runtime: str) -> Runner:
    """Construct a runner; a runtime that cannot read the artifact is the bundle's fault (exit 2), said in one
    line: a file cut short by a copy, edited, or written by an incompatible version."""
    try:
        return runner_class(bundle, threads)
    except (MissingDependency, BadInput):
        raise
    except _OUR_BUGS:
        raise
    except Exception as e:  # noqa: BLE001 - each runtime raises its own types for an unreadable model
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        what = "engine" if runtime == "tensorrt" else "artifact"
        fix = "rebuild it with `edgevision build-engine`" if runtime == "tensorrt" else "re-export the bundle"
        name = "model.engine" if runtime == "tensorrt" else bundle.meta.artifact
        raise BadInput(f"{bundle.path / name}: {what} is corrupt or unreadable by {runtime} "
                       f"({first}); {fix}") from None


def require(module: str, runtime: str, purpose: str = ""):
    """Import an optional runtime module or raise MissingDependency naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        _, extra = RUNTIME_EXTRAS.get(runtime, (module, runtime))
        raise MissingDependency(module, extra, purpose or f"the {runtime} runtime") from None
