"""The one small interface every backend implements, and the lookup that picks a backend for a bundle."""

from __future__ import annotations

import importlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from edgevision.errors import BadInput, MissingDependency

if TYPE_CHECKING:
    from edgevision.bundle import Bundle, GraphSpec, TensorSpec

Feeds = Mapping[str, np.ndarray]

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
    """Runs a bundle's graphs, one at a time, on named tensors:

        runner.run("mask_decoder", {"image_embeddings": e, "point_coords": p, "point_labels": l})
        -> {"low_res_masks": ..., "iou_predictions": ...}

    Inputs are checked against the graph's TensorSpecs (names, dtype); outputs come back as float32 arrays
    keyed by the graph's output names, each with a leading batch dimension. A backend implements ``_run`` for
    one graph on already checked feeds, and binds tensors by name, never by position.
    """

    runtime: str = ""
    device: str = "CPU"
    # Largest batch ``run`` takes at once. Artifacts have a static batch of 1; the PyTorch reference takes
    # more, which evaluation uses (eager PyTorch at batch 1 is mostly per-op overhead).
    max_batch: int = 1

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        self.bundle = bundle
        self.threads = threads or bundle_default_threads(bundle)

    @property
    def graphs(self) -> dict[str, GraphSpec]:
        return self.bundle.meta.graphs

    def run(self, graph: str, feeds: Feeds) -> dict[str, np.ndarray]:
        spec = self.graphs.get(graph)
        if spec is None:
            raise ValueError(f"no graph '{graph}' in this bundle (it has: {', '.join(self.graphs)})")
        return self._run(graph, checked_feeds(spec.inputs, feeds, graph))

    @abstractmethod
    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One graph on feeds keyed by its input names (dtype already matching the specs)."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing to release
        pass

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict:
        return {"runtime": self.runtime, "device": self.device, "threads": self.threads}


def checked_feeds(specs: list[TensorSpec], feeds: Feeds, graph: str) -> dict[str, np.ndarray]:
    """``feeds`` as contiguous arrays of each spec's dtype; a missing, unexpected or wrongly typed input is a
    ValueError naming the graph and what it takes."""
    wanted = [t.name for t in specs]
    if set(feeds) != set(wanted):
        raise ValueError(f"graph '{graph}' takes inputs {wanted}; got {sorted(feeds)}")
    out = {}
    for t in specs:
        value = np.asarray(feeds[t.name])
        if t.dtype == "uint8" and value.dtype != np.uint8:
            raise ValueError(f"graph '{graph}' input '{t.name}' is uint8 (raw pixels); got {value.dtype}")
        out[t.name] = np.ascontiguousarray(value, dtype=t.dtype)
    return out


def thread_cap() -> int:
    """This machine's cores, or fewer if ``EDGEVISION_THREADS`` says so (a machine shared with other work)."""
    cores = os.cpu_count() or 1
    value = os.environ.get("EDGEVISION_THREADS", "").strip()
    if not value:
        return cores
    if not value.isdigit() or int(value) < 1:
        raise BadInput(f"EDGEVISION_THREADS={value!r}: give a whole number of threads, at least 1")
    return min(int(value), cores)


def bundle_default_threads(bundle: Bundle) -> int:
    """The profile's inference threads, never more than ``thread_cap()``."""
    from edgevision.config import get_target

    cores = thread_cap()
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
        cause = e.__cause__ if isinstance(e, UnreadableArtifact) and e.__cause__ else e
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
        what = "engine" if runtime == "tensorrt" else "artifact"
        fix = "rebuild it with `edgevision build-engine`" if runtime == "tensorrt" else "re-export the bundle"
        name = e.file if isinstance(e, UnreadableArtifact) else ", ".join(g.artifact for g in bundle.meta.graphs.values())
        raise BadInput(f"{bundle.path / name}: {what} is corrupt or unreadable by {runtime} "
                       f"({first}); {fix}") from None


class UnreadableArtifact(Exception):
    """A runtime could not read one graph's file (``file``, inside the bundle); the cause is chained."""

    def __init__(self, file: str) -> None:
        super().__init__(file)
        self.file = file


def open_graphs(bundle: Bundle, open_one, file_of=None) -> dict:
    """``open_one(name, spec, path)`` for every graph of ``bundle``, keyed by graph name. A runtime's own error
    is re-raised naming the file it could not read; edgevision's bugs and bad input pass through."""
    handles = {}
    for name, spec in bundle.meta.graphs.items():
        file = file_of(name, spec) if file_of else spec.artifact
        try:
            handles[name] = open_one(name, spec, bundle.path / file)
        except (MissingDependency, BadInput, *_OUR_BUGS):
            raise
        except Exception as e:  # noqa: BLE001 - each runtime raises its own types for an unreadable model
            raise UnreadableArtifact(file) from e
    return handles


def require(module: str, runtime: str, purpose: str = ""):
    """Import an optional runtime module or raise MissingDependency naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        _, extra = RUNTIME_EXTRAS.get(runtime, (module, runtime))
        raise MissingDependency(module, extra, purpose or f"the {runtime} runtime") from None
