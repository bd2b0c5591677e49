"""The FP32 PyTorch reference behind the Runner interface, so check and bench treat it like any backend.

Not a deployment runtime (no target allows it): it exists to compare artifacts against, so it lives in check/,
which may build models; the device side (runtime/) never imports PyTorch or models/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevision.bundle import Bundle, sha256_file
from edgevision.errors import BadInput, MissingDependency
from edgevision.models.registry import get_variant
from edgevision.runtime.base import Runner, checked_feeds


class PyTorchRunner(Runner):
    """The model's export graphs (``models.wrappers.model_graphs``) run eagerly in PyTorch, on named tensors."""

    runtime = "pytorch"
    max_batch = 16

    def __init__(self, model, preprocess, threads: int = 2, imgsz: int = 0) -> None:
        import torch

        from edgevision.models.wrappers import model_graphs

        self.bundle = None
        self.threads = threads
        torch.set_num_threads(threads)
        self._graphs = {g.name: g for g in model_graphs(model.eval(), preprocess, imgsz)}
        for g in self._graphs.values():
            g.module.eval()

    @property
    def graphs(self) -> dict:
        return self._graphs

    def run(self, graph: str, feeds) -> dict[str, np.ndarray]:
        g = self._graphs.get(graph)
        if g is None:
            raise ValueError(f"no graph '{graph}' in this model (it has: {', '.join(self._graphs)})")
        return self._run(graph, checked_feeds(g.inputs, feeds, graph))

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        g = self._graphs[graph]
        with torch.inference_mode():
            out = g.module(*(torch.from_numpy(feeds[t.name]) for t in g.inputs))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {name: o.float().numpy() for name, o in zip(g.outputs, outs)}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def reference_runner(bundle: Bundle, weights: Path | None = None, threads: int = 2) -> Runner:
    """The FP32 PyTorch model the bundle was exported from, rebuilt from its weights (or its random seed)."""
    if not torch_available():
        raise MissingDependency("torch", "export", "the FP32 PyTorch reference")
    from edgevision.models.loading import build_model

    meta = bundle.meta
    variant = get_variant(meta.model)
    path = Path(weights) if weights else (Path(meta.weights_path) if meta.weights_path else None)
    if not meta.random_weights:
        if path is None or not path.is_file():
            raise BadInput(f"{bundle.path}: the reference weights {path} are not there; pass --weights with the "
                           f"checkpoint the bundle was exported from")
        if weights is None and meta.weights_sha256 and sha256_file(path) != meta.weights_sha256:
            raise BadInput(f"{path} changed since {bundle.path} was exported (sha256 differs); pass --weights with "
                           f"the original checkpoint, or re-export")
    model = build_model(variant, weights=None if meta.random_weights else path,
                        random_seed=meta.random_seed if meta.random_weights else None, num_classes=len(meta.labels))
    return PyTorchRunner(model, meta.preprocess, threads, meta.imgsz)

