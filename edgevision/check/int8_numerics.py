"""Why one INT8 artifact can compute differently on two x86 CPUs, and how to tell from the artifact.

x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) multiply u8 activations by s8 weights with VPMADDUBSW, which
adds each *pair* of adjacent products into a signed 16-bit lane and saturates at +-32767 before the pairs are
widened to 32 bits. With 8-bit weights a pair can reach 255 * 127 * 2 = 64770, so ONNX Runtime's MLAS and
oneDNN lose accuracy there that a VNNI CPU (VPDPBUSD, straight into 32 bits) never loses. Weights within -64..64
cannot saturate (255 * 64 * 2 = 32640), which is why the cpu and intel-npu profiles quantize weights to 7 bits.

``vpmaddubsw_dot`` emulates that arithmetic in NumPy, so tests pin the AVX2 numerics on any machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INT16_MAX = 32767
U8_MAX = 255
# The largest weight magnitude whose pairs can never saturate a 16-bit lane with u8 activations.
SATURATION_FREE_WEIGHT = INT16_MAX // (2 * U8_MAX)  # 64


def exact_dot(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(M, K) uint8 @ (K, N) int8 -> (M, N) int32, exactly (VNNI, AMX, TensorRT)."""
    return a.astype(np.int32) @ w.astype(np.int32)


def vpmaddubsw_dot(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(M, K) uint8 @ (K, N) int8 -> (M, N) int32 as x86 without VNNI computes it: products of adjacent k
    (0-1, 2-3, ...) are added in int16 with saturation, then the pairs are summed in int32 (VPMADDWD)."""
    if a.dtype != np.uint8 or w.dtype != np.int8 or a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
        raise ValueError(f"need (M, K) uint8 and (K, N) int8, got {a.dtype}{a.shape} and {w.dtype}{w.shape}")
    k = a.shape[1]
    if k % 2:  # the kernels pad K with zeros to an even count
        a = np.pad(a, ((0, 0), (0, 1)))
        w = np.pad(w, ((0, 1), (0, 0)))
    a32, w32 = a.astype(np.int32), w.astype(np.int32)
    pairs = a32[:, 0::2, None] * w32[None, 0::2, :] + a32[:, 1::2, None] * w32[None, 1::2, :]
    return np.clip(pairs, -INT16_MAX - 1, INT16_MAX).sum(axis=1, dtype=np.int32)


def onnx_weight_ranges(path: Path) -> dict[str, int]:
    """For every Conv/ConvTranspose/MatMul/Gemm whose weight is an int8 initializer behind a DequantizeLinear:
    node name -> the largest weight magnitude."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    dequantized = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            values = numpy_helper.to_array(inits[node.input[0]])
            if values.dtype == np.int8:
                dequantized[node.output[0]] = int(np.abs(values.astype(np.int16)).max())
    return {n.name: dequantized[n.input[1]] for n in model.graph.node
            if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and len(n.input) > 1
            and n.input[1] in dequantized}


def saturation_note(runner) -> str | None:
    """A note for `check` when ``runner``'s INT8 results on this CPU may differ from a VNNI CPU's, or None.

    Bundles from the cpu and intel-npu profiles record ``weight_bits: 7`` and compute the same everywhere, and
    jetson bundles run unfused on a host; an older bundle with 8-bit weights, run by fused int8 kernels on x86
    without VNNI (or with oneDNN capped below it), may saturate."""
    from edgevision.hardware import cpu_info

    bundle, cpu = runner.bundle, cpu_info()
    meta = bundle.meta
    int8_dot = cpu.openvino_int8_dot if runner.runtime == "openvino" else cpu.int8_dot
    if meta.precision != "int8" or int8_dot is not None or cpu.arch not in ("x86_64", "AMD64"):
        return None
    if runner.runtime not in ("onnxruntime", "openvino") or getattr(runner, "exact_int8", False):
        return None
    details = []
    for name, graph in meta.graphs.items():
        if graph.precision != "int8" or (graph.quantization or {}).get("weight_bits") == 7:
            continue
        if graph.artifact.endswith(".onnx"):
            worst = max(onnx_weight_ranges(bundle.path / graph.artifact).values(), default=0)
            if worst > SATURATION_FREE_WEIGHT:
                details.append(f"its int8 weights reach {worst}" + (f" in {name}" if len(meta.graphs) > 1 else ""))
        elif graph.artifact.endswith(".xml"):
            details.append("it was quantized with 8-bit weights (NNCF's overflow fix on the first layer only)")
    if not details:
        return None
    detail = "; ".join(details)
    return (f"this CPU has no VNNI: its int8 kernels add pairs of u8 x s8 products in 16 bits and saturate "
            f"above 32767, and {detail}, so its figures here can be lower than on a VNNI CPU or the device; "
            f"re-export with this edgevision (7-bit weights: the same results on every x86 CPU)")
