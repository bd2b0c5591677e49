"""ONNX Runtime backend (CPU execution provider): cpu bundles, and jetson bundles checked on the host."""

from __future__ import annotations

import numpy as np

from edgevision.runtime.base import Runner, require

ort = require("onnxruntime", "onnxruntime")


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, bundle, threads=None, *, extra_outputs: list[str] | None = None) -> None:
        super().__init__(bundle, threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(bundle.artifact_path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: batch})
