"""This machine's FP32 and INT8 matmul peaks, measured with the runtimes installed here (never PyTorch: its int8
matmul takes a slow fallback on many CPUs, 0.5 GMAC/s on an AVX2 machine).

`bench` measures them in the same process as the artifact, so that "this model reaches 60 % of the INT8 peak" is
a statement about the model and edgevision, not about how fast or loaded the machine happened to be.

Candidates, each a square GEMM (512 and 1024) with constant weights:
* OpenVINO: FP32 MatMul; INT8 as FakeQuantize(u8) activations x int8 weights, which OpenVINO runs as an
  int8 FullyConnected (its executed primitive is recorded).
* ONNX Runtime: FP32 MatMul; INT8 MatMulInteger (u8 x s8 -> int32).
The fastest per precision is the peak.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable

import numpy as np

GEMM_SIZES = (512, 1024)  # the smaller fits the caches of small CPUs better; the faster counts


def _openvino_gemms(n: int, threads: int) -> dict[str, tuple[Callable[[], object], str]]:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    x_f32 = rng.standard_normal((n, n), dtype=np.float32)
    x_pos = np.abs(x_f32)

    def compile_(output, param, feed):
        compiled = core.compile_model(ov.Model([output], [param]), "CPU", config)
        request = compiled.create_infer_request()
        kinds = {op.get_rt_info()["primitiveType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
                 if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul")}
        return (lambda: request.infer({0: feed}, share_inputs=True)), ", ".join(sorted(kinds)) or "?"

    p32 = ops.parameter([n, n], np.float32)
    w32 = ops.constant(rng.standard_normal((n, n), dtype=np.float32))
    fp32 = compile_(ops.matmul(p32, w32, False, True), p32, x_f32)

    p8 = ops.parameter([n, n], np.float32)
    lo, hi = ops.constant(np.float32(0)), ops.constant(np.float32(4))
    act = ops.fake_quantize(p8, lo, hi, lo, hi, 256)
    w8 = ops.constant(rng.integers(-64, 65, (n, n), dtype=np.int8))
    scale = ops.constant(np.full((n, 1), 0.01, np.float32))
    weights = ops.multiply(ops.convert(w8, "f32"), scale)
    int8 = compile_(ops.matmul(act, weights, False, True), p8, x_pos)
    return {"fp32": fp32, "int8": int8}


def _onnxruntime_gemms(n: int, threads: int) -> dict[str, tuple[Callable[[], object], str]]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3

    def session(op: str, a_type: int, w: np.ndarray, out_type: int):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "w"], ["y"])], "gemm", [helper.make_tensor_value_info("a", a_type, [n, n])],
            [helper.make_tensor_value_info("y", out_type, [n, n])], [numpy_helper.from_array(w, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 9)
        onnx.checker.check_model(model)
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    s32 = session("MatMul", TensorProto.FLOAT, rng.standard_normal((n, n), dtype=np.float32), TensorProto.FLOAT)
    a32 = rng.standard_normal((n, n), dtype=np.float32)
    s8 = session("MatMulInteger", TensorProto.UINT8, rng.integers(-64, 65, (n, n), dtype=np.int8), TensorProto.INT32)
    a8 = rng.integers(0, 256, (n, n), dtype=np.uint8)
    return {"fp32": (lambda: s32.run(None, {"a": a32}), "MLAS sgemm"),
            "int8": (lambda: s8.run(None, {"a": a8}), "MLAS MatMulInteger u8s8")}


CANDIDATES = {"openvino": _openvino_gemms, "onnxruntime": _onnxruntime_gemms}


def candidates(threads: int, sizes: tuple[int, ...] = GEMM_SIZES) -> list[dict]:
    """One entry per runtime installed here, precision and size: {runtime, precision, n, kernel, call}."""
    found = []
    for runtime, build in CANDIDATES.items():
        if importlib.util.find_spec(runtime) is None:
            continue
        for n in sizes:
            for precision, (call, kernel) in build(n, threads).items():
                found.append({"runtime": runtime, "precision": precision, "n": n, "kernel": kernel, "call": call})
    return found


def peaks_from_rows(rows: list[dict]) -> dict:
    """{"fp32": best row, "int8": best row, "candidates": rows}; each row has ``gmac_per_s``."""
    peaks = {}
    for precision in ("fp32", "int8"):
        best = max((r for r in rows if r["precision"] == precision), key=lambda r: r["gmac_per_s"], default=None)
        if best:
            peaks[precision] = best
    return {**peaks, "candidates": rows}


def measure_peaks(threads: int, runs: int = 10) -> dict:
    """Each candidate GEMM timed ``runs`` times after one warm-up call; the fastest call counts (a peak is what
    the machine can do, so the least disturbed call is the measurement)."""
    rows = []
    for c in candidates(threads):
        c["call"]()
        best = float("inf")
        for _ in range(runs):
            t0 = time.perf_counter()
            c["call"]()
            best = min(best, time.perf_counter() - t0)
        rows.append({k: v for k, v in c.items() if k != "call"} | {"gmac_per_s": round(c["n"] ** 3 / best / 1e9, 1)})
    return peaks_from_rows(rows)


def share_of_peak(macs: int | None, median_ms: float, precision: str, peaks: dict) -> dict | None:
    """The artifact's GMAC/s and its share of the same-run peak of its precision (fp16 counts against FP32: the
    CPU runtimes here compute it in FP32)."""
    key = "int8" if precision == "int8" else "fp32"
    if not macs or key not in peaks or median_ms <= 0:
        return None
    rate = macs / (median_ms / 1000) / 1e9
    return {"gmac": round(macs / 1e9, 3), "gmac_per_s": round(rate, 1), "peak": key,
            "peak_gmac_per_s": peaks[key]["gmac_per_s"], "share": round(rate / peaks[key]["gmac_per_s"], 3)}
