"""The FP32 PyTorch reference behind the Runner interface, so check and bench treat it like any backend.

Not a deployment runtime (no target allows it): it exists to compare artifacts against.
"""

from __future__ import annotations

import numpy as np
import torch

from edgevision.export.wrappers import UInt8Input
from edgevision.runtime.base import Runner


class PyTorchRunner(Runner):
    runtime = "pytorch"
    max_batch = 16

    def __init__(self, model: torch.nn.Module, preprocess, threads: int = 2) -> None:
        self.bundle = None
        self.threads = threads
        torch.set_num_threads(threads)
        self.model = UInt8Input(model, preprocess).eval()

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        out = self.model(torch.from_numpy(np.ascontiguousarray(batch)))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.numpy() for o in outs]
