"""The FP32 PyTorch reference behind the Runner interface, so check and bench treat it like any backend.

Not a deployment runtime (no target allows it): it exists to compare artifacts against, so it lives in check/,
which may build models; the device side (runtime/) never imports PyTorch or models/.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgevision.bundle import Bundle, atomic_path, cache_dir, sha256_file
from edgevision.errors import BadInput, MissingDependency
from edgevision.models.registry import get_variant
from edgevision.runtime.base import Runner, checked_feeds


# Reference outputs up to this size a sample are kept on disk: every graph of the demo models (the U-Net's
# 6-class logits at 256 px, 1.6 MB; the tracker's 24-frame clips, 237 MB in all), not the feature maps of
# 1024 px models, which are recomputed rather than fill the disk. The whole reference cache keeps to a budget
# (EDGEVISION_REFERENCE_CACHE_MB), the models used longest ago dropped first.
CACHE_MAX_BYTES_PER_SAMPLE = 2 * 1024 * 1024
CACHE_BUDGET_MB = 2048


class PyTorchRunner(Runner):
    """The model's export graphs (``models.wrappers.model_graphs``) run eagerly in PyTorch, on named tensors.

    With ``cache=True`` the outputs of each call are kept under the cache directory, keyed by the inputs and by
    everything the outputs depend on (the weights, edgevision's source, torch's version, the CPU), so that
    exporting one model to four targets and checking each runs the FP32 model over the eval set once.
    ``EDGEVISION_REFERENCE_CACHE=0`` turns it off. Timing (``bench``) never uses it."""

    runtime = "pytorch"
    max_batch = 16

    def __init__(self, model, preprocess, threads: int = 2, imgsz: int = 0, *, cache: bool = False) -> None:
        import torch

        from edgevision.models.wrappers import model_graphs

        self.bundle = None
        self.threads = threads
        torch.set_num_threads(threads)
        self._graphs = {g.name: g for g in model_graphs(model.eval(), preprocess, imgsz)}
        for g in self._graphs.values():
            g.module.eval()
        self.cache_hits = self.cache_misses = 0
        self._cache = None
        if cache and os.environ.get("EDGEVISION_REFERENCE_CACHE", "1") != "0":
            self._cache = cache_dir() / "reference" / model_digest(model, preprocess, imgsz)
            prune_reference_cache(self._cache.parent, keep=self._cache)

    @property
    def graphs(self) -> dict:
        return self._graphs

    def run(self, graph: str, feeds) -> dict[str, np.ndarray]:
        g = self._graphs.get(graph)
        if g is None:
            raise ValueError(f"no graph '{graph}' in this model (it has: {', '.join(self._graphs)})")
        return self._run(graph, checked_feeds(g.inputs, feeds, graph))

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._cache is None:
            return self._compute(graph, feeds)
        h = hashlib.sha256(graph.encode())
        for name in sorted(feeds):
            a = np.ascontiguousarray(feeds[name])
            h.update(f"|{name}|{a.dtype}|{a.shape}|".encode())
            h.update(a.data)
        path = self._cache / f"{graph}-{h.hexdigest()[:32]}.npz"
        try:
            with np.load(path, allow_pickle=False) as stored:
                out = {name: stored[name] for name in self._graphs[graph].outputs}
            self.cache_hits += 1
            return out
        except (OSError, KeyError, ValueError):  # absent, or a damaged file: recompute and rewrite
            pass
        out = self._compute(graph, feeds)
        self.cache_misses += 1
        batch = max(1, len(next(iter(feeds.values()))))
        if sum(o.nbytes for o in out.values()) <= CACHE_MAX_BYTES_PER_SAMPLE * batch:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **out)
            except OSError:  # a read-only or full cache only costs the time it would have saved
                pass
        return out

    def _compute(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        g = self._graphs[graph]
        with torch.inference_mode():
            out = g.module(*(torch.from_numpy(feeds[t.name]) for t in g.inputs))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {name: o.float().numpy() for name, o in zip(g.outputs, outs)}


def cache_budget_bytes() -> int:
    value = os.environ.get("EDGEVISION_REFERENCE_CACHE_MB", "").strip() or str(CACHE_BUDGET_MB)
    try:
        mb = float(value)
    except ValueError:
        mb = -1
    if mb < 0:
        raise BadInput(f"EDGEVISION_REFERENCE_CACHE_MB={value!r}: give the reference cache's size in MB (0 keeps "
                       f"nothing but the model in use), or EDGEVISION_REFERENCE_CACHE=0 to turn it off")
    return int(mb * 1024 * 1024)


def prune_reference_cache(root: Path, keep: Path | None = None, budget: int | None = None) -> list[Path]:
    """Drop whole models' reference outputs, least recently used first, until the cache fits its budget.
    ``keep`` (the model about to be used) is marked used now and never dropped. Returns what was removed."""
    import shutil

    budget = cache_budget_bytes() if budget is None else budget
    if keep is not None and keep.is_dir():
        os.utime(keep)
    entries = []
    try:
        folders = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return []
    for folder in folders:
        try:
            files = [f.stat() for f in folder.iterdir()]
            used = max([folder.stat().st_mtime] + [f.st_mtime for f in files])
        except OSError:  # another process removed it meanwhile
            continue
        entries.append((folder == keep, used, sum(f.st_size for f in files), folder))
    total = sum(size for _, _, size, _ in entries)
    removed = []
    for is_kept, _, size, folder in sorted(entries):  # others first, the oldest first
        if total <= budget or is_kept:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
        removed.append(folder)
    return removed


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """edgevision's own source: a changed model, task or preprocessing file must not reuse old outputs."""
    import torch

    h = hashlib.sha256(f"torch {torch.__version__} numpy {np.__version__}".encode())
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def model_digest(model, preprocess, imgsz: int) -> str:
    """What a reference output depends on besides its inputs: the code, the weights, the preprocessing, the
    input size, and the CPU (FP32 summation order differs between instruction sets)."""
    from edgevision.hardware import cpu_info

    cpu = cpu_info()
    h = hashlib.sha256(_code_digest().encode())
    h.update(f"{type(model).__name__}|{preprocess!r}|{imgsz}|{cpu.model}|{sorted(cpu.isa)}".encode())
    for name, t in model.state_dict().items():
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"|{name}|{a.dtype}|{a.shape}|".encode())
        h.update(a.data)
    return h.hexdigest()[:24]


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def reference_runner(bundle: Bundle, weights: Path | None = None, threads: int = 2, *, cache: bool = False
                     ) -> Runner:
    """The FP32 PyTorch model the bundle was exported from, rebuilt from its weights (or its random seed);
    ``cache``: see PyTorchRunner."""
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
    return PyTorchRunner(model, meta.preprocess, threads, meta.imgsz, cache=cache)

