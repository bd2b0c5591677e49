"""INT8 that computes the same on every x86 CPU, and reports that name the CPU they ran on.

The dev machine and CI change CPU between sessions (AVX-512 VNNI/AMX one day, AVX2 only the next), so these tests
pin the AVX2 numerics on any machine: by emulating VPMADDUBSW's 16-bit pair saturation in NumPy, and by checking
that host-side jetson checks never use the host's fused int8 kernels.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from edgevision.check.int8_numerics import SATURATION_FREE_WEIGHT, exact_dot, onnx_weight_ranges, vpmaddubsw_dot
from edgevision.hardware import CpuInfo, cpu_info, parse_cpuinfo

AVX2_ONLY = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B12
flags		: fpu sse sse2 ssse3 sse4_1 sse4_2 fma avx avx2 bmi2
"""
VNNI = """processor	: 0
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse avx avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8 avx_vnni
"""
PI5 = """processor	: 0
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU part	: 0xd0b
"""


def _info(text: str, arch: str = "x86_64", cap: str | None = None) -> CpuInfo:
    model, isa = parse_cpuinfo(text, arch)
    return CpuInfo(model=model or "unknown", arch=arch, isa=isa, cores=2, onednn_cap=cap)


def test_cpu_kinds_and_the_missing_instruction_are_named():
    avx2, vnni, pi = _info(AVX2_ONLY), _info(VNNI), _info(PI5, "aarch64")
    assert avx2.kind == "avx2" and avx2.int8_dot is None and avx2.model == "AMD EPYC 7B12"
    note = avx2.int8_slower_note()
    assert "AMD EPYC 7B12" in note and "VNNI" in note and "AMX" in note
    assert vnni.kind == "amx" and vnni.int8_dot == "AMX-INT8" and vnni.int8_slower_note() is None
    assert {"AVX-512 VNNI", "AVX-VNNI", "AVX2"} <= set(vnni.isa)
    assert pi.kind == "arm-dotprod" and pi.int8_dot == "NEON dot product" and pi.int8_slower_note() is None
    # a oneDNN cap hides VNNI from OpenVINO, not from ONNX Runtime
    capped = _info(VNNI, cap="AVX2")
    assert capped.openvino_int8_dot is None and "ONEDNN_MAX_CPU_ISA=AVX2" in capped.int8_slower_note("openvino")
    assert capped.int8_slower_note("onnxruntime") is None
    here = cpu_info().to_json()
    assert here["model"] and here["cores"] >= 1 and isinstance(here["isa"], list)


def _loop_vpmaddubsw(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The same instruction, written out element by element: an independent check of the vectorised one."""
    m, k = a.shape
    n = w.shape[1]
    out = np.zeros((m, n), np.int64)
    for i in range(m):
        for j in range(n):
            for p in range(0, k, 2):
                pair = int(a[i, p]) * int(w[p, j]) + (int(a[i, p + 1]) * int(w[p + 1, j]) if p + 1 < k else 0)
                out[i, j] += min(max(pair, -32768), 32767)
    return out


def test_vpmaddubsw_emulation_saturates_8bit_weights_and_never_7bit():
    rng = np.random.default_rng(0)
    a = rng.integers(200, 256, (6, 27), dtype=np.uint8)  # bright pixels, 3x3x3 like a first conv
    w8 = rng.integers(-127, 128, (27, 5), dtype=np.int8)
    np.testing.assert_array_equal(vpmaddubsw_dot(a, w8), _loop_vpmaddubsw(a, w8))
    assert not np.array_equal(vpmaddubsw_dot(a, w8), exact_dot(a, w8))  # 8-bit weights saturate
    worst = np.full((4, 32), 255, np.uint8)
    for w in (rng.integers(-64, 65, (32, 7), dtype=np.int8), np.full((32, 7), 64, np.int8),
              np.full((32, 7), -64, np.int8)):
        np.testing.assert_array_equal(vpmaddubsw_dot(worst, w), exact_dot(worst, w))
    assert SATURATION_FREE_WEIGHT == 64


def _first_conv_operands(model_path, inputs: np.ndarray):
    """The first quantized Conv of a QDQ graph: its uint8 input as im2col rows (raw codes, padded with the zero
    point as MLAS pads) and its int8 weight as (K, N), plus its float weight and weight scales."""
    model = onnx.load(str(model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and producer[n.input[0]].op_type == "DequantizeLinear")
    act_dq, w_dq = producer[conv.input[0]], producer[conv.input[1]]
    q_tensor = act_dq.input[0]
    zero = int(inits[act_dq.input[2]])
    model.graph.output.append(helper.make_tensor_value_info(q_tensor, onnx.TensorProto.UINT8, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    codes = np.concatenate([sess.run([q_tensor], {"image": x[None]})[0] for x in inputs])
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    w_q = inits[w_dq.input[0]]  # (Cout, Cin, kh, kw) int8
    cout, cin, kh, kw = w_q.shape
    pad = attrs.get("pads", [0, 0, 0, 0])
    stride = attrs.get("strides", [1, 1])
    x = np.pad(codes, ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])), constant_values=zero)
    rows = []
    for i in range(0, x.shape[2] - kh + 1, stride[0]):
        for j in range(0, x.shape[3] - kw + 1, stride[1]):
            rows.append(x[:, :, i : i + kh, j : j + kw].reshape(len(x), -1))
    a = np.concatenate(rows).astype(np.uint8)
    scales = inits[w_dq.input[1]].reshape(-1, 1, 1, 1)
    return a, w_q.reshape(cout, -1).T.copy(), (w_q.astype(np.float32) * scales).reshape(cout, -1).T


def test_cpu_int8_bundle_computes_on_avx2_exactly_what_vnni_computes(yolo_cpu_int8, unet_cpu_int8):
    """The cpu bundles' weights stay within -64..64, so no u8 x s8 pair saturates on an AVX2 CPU. On the real
    activations of the first convolution, the emulated AVX2 arithmetic equals exact arithmetic; the same layer
    quantized with 8-bit weights (the old scheme) would have saturated."""
    for bundle in (yolo_cpu_int8, unet_cpu_int8):
        assert bundle.meta.graphs["model"].quantization["weight_bits"] == 7
        ranges = onnx_weight_ranges(bundle.graph_path("model"))
        assert ranges and max(ranges.values()) <= SATURATION_FREE_WEIGHT, ranges
    golden = np.load(yolo_cpu_int8.path / "golden.npz")["model/inputs/image"][:4]
    a, w7, w_float = _first_conv_operands(yolo_cpu_int8.graph_path("model"), golden)
    np.testing.assert_array_equal(vpmaddubsw_dot(a, w7), exact_dot(a, w7))
    w8 = np.clip(np.round(w_float / (np.abs(w_float).max(axis=0) / 127)), -127, 127).astype(np.int8)
    saturated = vpmaddubsw_dot(a, w8) != exact_dot(a, w8)
    assert saturated.any(), "8-bit weights should saturate somewhere on these activations"


@pytest.fixture(scope="session")
def yolo_jetson_int8(export_once):
    return export_once("fast-yolo-demo", "jetson", "int8")


FUSED_INT8_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat",
                  "QLinearAdd", "QLinearMul", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearConcat",
                  "QLinearAveragePool", "QLinearGlobalAveragePool", "DynamicQuantizeMatMul"}


def _optimized_ops(path, options, tmp_path) -> set[str]:
    """The op types ONNX Runtime actually runs for ``path`` with ``options`` (its optimised graph)."""
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}


def test_jetson_int8_is_checked_with_exact_int8_not_the_hosts_fused_kernels(yolo_jetson_int8, tmp_path):
    """On a host the jetson QDQ graph stands in for TensorRT, which computes INT8 exactly. edgevision's runner
    keeps every Q/DQ unfused (int8 values, float32 arithmetic), so no host int8 kernel runs: on AVX2 hosts ORT's
    fused kernels saturate, which cost a detector 6.8 mAP points that the device never loses. The check reads
    the graph the runner's own session options produce, and would see a fused kernel."""
    from edgevision.runtime.base import open_runner

    runner = open_runner(yolo_jetson_int8, "onnxruntime")
    assert runner.exact_int8 and "unfused" in runner.describe()["kernels"]
    ops = _optimized_ops(yolo_jetson_int8.graph_path("model"), runner.sessions["model"].get_session_options(), tmp_path)
    assert "QuantizeLinear" in ops and "Conv" in ops and not ops & FUSED_INT8_OPS, ops
    # the same graph with ORT's defaults runs fused int8 kernels: what the runner must not do
    default = ort.SessionOptions()
    assert _optimized_ops(yolo_jetson_int8.graph_path("model"), default, tmp_path) & FUSED_INT8_OPS
    # and what it runs is the Q/DQ arithmetic: close to the graph with no optimisation at all (float summation
    # order may flip a rounding here and there, as TensorRT's own order does)
    inputs = np.load(yolo_jetson_int8.path / "golden.npz")["model/inputs/image"][:8]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(yolo_jetson_int8.graph_path("model")), opts, providers=["CPUExecutionProvider"])
    ours = np.concatenate([runner.run("model", {"image": x[None]})["output"] for x in inputs]).ravel()
    exact = np.concatenate([plain.run(None, {"image": x[None]})[0] for x in inputs]).ravel()
    assert float(ours @ exact / np.linalg.norm(ours) / np.linalg.norm(exact)) > 0.999


def test_export_warns_when_int8_will_be_slow_on_this_host(monkeypatch, caplog):
    """With oneDNN capped below VNNI (or on a CPU without it), an intel-npu export for this host says INT8 is
    likely slower than FP32 here, naming what is missing."""
    from edgevision.config import get_target
    from edgevision.export import warn_if_int8_is_slow_here

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cpu_info.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="edgevision"):
            warn_if_int8_is_slow_here(get_target("intel-npu"))
        assert "INT8 is likely slower than FP32" in caplog.text
        assert "VNNI" in caplog.text or "ONEDNN_MAX_CPU_ISA=AVX2" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgevision"):
            warn_if_int8_is_slow_here(get_target("jetson"))  # not the host: never warned
        assert caplog.text == ""
    finally:
        cpu_info.cache_clear()


def test_a_bad_input_stays_a_one_line_error_where_int8_would_be_slow(monkeypatch, capsys, tmp_path):
    """On an AVX2-only CPU the slow-INT8 warning used to come before the error for a bad --calib or --weights,
    so the error was no longer one line. The warning now waits until the inputs are read."""
    from edgevision.cli import main
    from test_cli import one_line_error

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cpu_info.cache_clear()
    try:
        empty = tmp_path / "empty"
        empty.mkdir()
        bad_weights = tmp_path / "corrupt.pt"
        bad_weights.write_bytes(b"\x00garbage" * 100)
        for extra in (["--calib", str(empty), "--random-weights"], ["--weights", str(bad_weights)]):
            code = main(["export", "fast-yolo-demo", "--target", "intel-npu", "--precision", "int8",
                         "--out", str(tmp_path / "b"), *extra])
            err = capsys.readouterr().err
            assert code == 2 and "INT8 is likely slower" not in err and str(tmp_path) in one_line_error(err)
    finally:
        cpu_info.cache_clear()


def test_bench_names_the_cpu_and_reports_the_share_of_the_same_run_peak(yolo_cpu_int8):
    from edgevision.check.bench import bench_bundle

    report = bench_bundle(yolo_cpu_int8, runs=5, warmup=1, reference=False)
    assert report["cpu"]["model"] and "isa" in report["cpu"]
    peaks = report["peaks"]
    assert peaks["fp32"]["gmac_per_s"] > 0 and peaks["int8"]["gmac_per_s"] > 0
    assert {c["runtime"] for c in peaks["candidates"]} >= {"onnxruntime", "openvino"}
    t = report["throughput"]
    assert t["peak"] == "int8" and t["gmac"] == pytest.approx(0.2855, abs=1e-3)
    # share is rounded to 3 decimals; gmac_per_s to its own precision
    assert t["share"] == pytest.approx(t["gmac_per_s"] / peaks["int8"]["gmac_per_s"], abs=1e-3)
    assert "MLAS" in report["runtime"]["kernels"]
    if cpu_info().int8_dot is None:
        assert any("no faster than FP32" in n and "VNNI" in n for n in report["notes"])


@pytest.mark.slow
def test_mac_count_matches_pytorch_hooks(tmp_path):
    """graphs.count_macs on the exported ONNX against a count from the PyTorch modules themselves."""
    import torch

    from edgevision.graphs import count_macs, export_onnx
    from edgevision.models.loading import build_model
    from edgevision.models.registry import get_variant
    from edgevision.models.wrappers import UInt8Input, image_spec

    for name in ("fast-yolo-demo", "mobile-unet"):
        v = get_variant(name)
        model = build_model(v, weights=None, random_seed=0, num_classes=len(v.labels)).eval()
        counted = [0]

        def hook(mod, _inputs, output):
            if isinstance(mod, torch.nn.Conv2d):
                counted[0] += output.numel() * mod.weight[0].numel()

        handles = [m.register_forward_hook(hook) for m in model.modules()]
        with torch.inference_mode():
            model(torch.zeros(1, 3, v.imgsz, v.imgsz))
        for h in handles:
            h.remove()
        path = tmp_path / f"{name}.onnx"
        export_onnx(UInt8Input(model, v.preprocess).eval(), path, inputs=[image_spec(v.imgsz)],
                    output_names=list(getattr(model, "output_names", ["output"])))
        assert count_macs(path) == counted[0] > 0
