"""ONNX Runtime backend (CPU execution provider): cpu bundles, and jetson bundles checked on the host.

A profile with ``onnxruntime_numerics: exact`` (the jetson profiles) runs its INT8 graphs with Q/DQ unfused
(graph optimisation level BASIC): every DequantizeLinear -> float op -> QuantizeLinear is computed in float32,
which is exact INT8 arithmetic as TensorRT computes it on the device. ORT's fused int8 kernels would instead
inherit the host CPU's: on x86 without VNNI its u8 x s8 kernels add pairs of products in 16 bits and saturate,
which cost a jetson detector 6.8 mAP points on an AVX2 host that the device never loses.
"""

from __future__ import annotations

import numpy as np

from edgevision.hardware import cpu_info
from edgevision.runtime.base import Runner, open_graphs, require

ort = require("onnxruntime", "onnxruntime")


def emulates_exact_int8(bundle) -> bool:
    """True when ``bundle``'s INT8 graph must run unfused on this host (its profile asks for exact numerics)."""
    from edgevision.config import get_target
    from edgevision.errors import BadInput

    if not any(g.precision == "int8" for g in bundle.meta.graphs.values()):
        return False
    try:
        return get_target(bundle.meta.target).onnxruntime_numerics == "exact"
    except BadInput:  # a profile this version does not know: its family decides
        return bundle.meta.target_family == "jetson"


def session_options(threads: int, *, exact_int8: bool = False, spinning: bool = True,
                    spin_after_run: bool = True):
    """Worker threads spin while they wait for work, which makes a graph of many small operators fast.
    ``spin_after_run=False`` stops them when each run returns, so the next session's graph (a bundle's next graph,
    a benchmark's other side) gets the cores; ``spinning=False`` never spins, slower inside every run."""
    opts = ort.SessionOptions()
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif not spin_after_run:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if exact_int8
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    opts.log_severity_level = 3
    return opts


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, bundle, threads=None, *, spinning: bool = True, spin_after_run: bool | None = None) -> None:
        super().__init__(bundle, threads)
        self.exact_int8 = emulates_exact_int8(bundle)
        if spin_after_run is None:
            # A bundle of several graphs runs them one after another: each session's pool, still spinning after
            # its graph, stole the cores from the next (sam-track-demo's tracker step, 2 cores: 118 ms spinning,
            # 30 ms not). Spinning inside each run still pays: EfficientSAM's 1024 px decoder took 36 ms against
            # 45 with no spinning at all (benchmarks/RESULTS.md)
            spin_after_run = len(bundle.meta.graphs) == 1
        opts = session_options(self.threads, exact_int8=self.exact_int8, spinning=spinning,
                               spin_after_run=spin_after_run)
        self.sessions = open_graphs(bundle, lambda name, spec, path: ort.InferenceSession(
            str(path), opts, providers=["CPUExecutionProvider"]))
        self._bound = {name: ([t.bound_name for t in spec.outputs], {t.name: t.bound_name for t in spec.inputs},
                              spec.output_names) for name, spec in self.graphs.items()}

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs, inputs, names = self._bound[graph]
        values = self.sessions[graph].run(outputs, {inputs[k]: v for k, v in feeds.items()})
        return dict(zip(names, values))

    def describe(self) -> dict:
        return {**super().describe(), "kernels": self.kernels()}

    def kernels(self) -> str:
        if self.bundle.meta.precision != "int8":
            return f"MLAS {self.bundle.meta.precision}"
        if self.exact_int8:
            return "Q/DQ unfused in float32: exact INT8 arithmetic, as TensorRT computes it on the device"
        # ORT does not report which MLAS kernel it picked; it follows the CPU's instruction sets.
        dot = cpu_info().int8_dot
        if dot:
            return f"MLAS fused int8 kernels with {dot} (inferred from the CPU)"
        if cpu_info().arch in ("x86_64", "AMD64"):
            return ("MLAS fused int8 kernels without VNNI: u8 x s8 pairs added in 16 bits, saturating above "
                    "32767 (inferred from the CPU)")
        return "MLAS fused int8 kernels (inferred from the CPU)"
