"""OpenVINO backend: intel-npu bundles (NPU when present, else CPU with a notice), and cpu bundles."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from edgevision.runtime.base import Runner, open_graphs, require

ov = require("openvino", "openvino")
log = logging.getLogger("edgevision")
_HEAVY_LAYERS = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"}


class OpenVINORunner(Runner):
    runtime = "openvino"

    def __init__(self, bundle, threads=None, *, device: str | None = None) -> None:
        super().__init__(bundle, threads)
        from edgevision.config import get_target

        core = ov.Core()
        wanted = device or get_target(bundle.meta.target).device or "CPU"
        available = core.available_devices
        if wanted not in available:
            if wanted != "CPU":
                log.warning("OpenVINO device %s not found (have: %s); running on CPU", wanted, ", ".join(available))
            wanted = "CPU"
        self.device = wanted
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if wanted == "CPU":
            config["INFERENCE_NUM_THREADS"] = self.threads
        if bundle.meta.precision in ("fp32", "int8") and wanted == "CPU":
            # On CPUs with bf16 units (AMX) OpenVINO otherwise runs every float op in bf16: FP32 bundles would not
            # be FP32, an INT8 bundle's float head would lose precision, and some INT8 U-Net graphs fail to
            # compile at all ("No suitable implementations"). INT8 convolutions stay INT8 either way.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = open_graphs(bundle, lambda name, spec, path: core.compile_model(str(path), wanted, config))
        self.requests = {name: c.create_infer_request() for name, c in self.compiled.items()}
        self._bound = {}
        for name, spec in self.graphs.items():
            c = self.compiled[name]
            self._bound[name] = ({t.name: c.input(t.bound_name) for t in spec.inputs},
                                 {t.name: c.output(t.bound_name) for t in spec.outputs})

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs, outputs = self._bound[graph]
        result = self.requests[graph].infer({inputs[k]: v for k, v in feeds.items()}, share_inputs=True)
        return {name: np.array(result[port]) for name, port in outputs.items()}

    def describe(self) -> dict:
        return {**super().describe(), "kernels": self.kernels()}

    def kernels(self) -> str:
        """The primitives OpenVINO executes for its convolutions and matmuls, e.g. 'brgconv_avx512_1x1_I8 x26':
        the executed graph is the only place that shows whether ONEDNN_MAX_CPU_ISA or a missing VNNI changed
        them."""
        counts: Counter[str] = Counter()
        for compiled in self.compiled.values():
            for op in compiled.get_runtime_model().get_ordered_ops():
                info = op.get_rt_info()
                if "layerType" in info and info["layerType"].astype(str) in _HEAVY_LAYERS:
                    counts[info["primitiveType"].astype(str)] += 1
        return ", ".join(f"{name} x{n}" for name, n in counts.most_common()) or "no convolution or matmul"
