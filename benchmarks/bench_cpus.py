"""The cpus issue's speed goals, every ratio measured side by side in one process, on whatever CPU runs it.

    python benchmarks/bench_cpus.py [--runs 60] [--models fast-yolo fast-yolo-demo mobile-unet] [--skip-peer]
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_cpus.py     # a VNNI machine capped to AVX2 (OpenVINO only)

Per model and host backend (cpu -> ONNX Runtime, intel-npu -> OpenVINO, rpi -> LiteRT/XNNPACK), one interleaved
timing of: edgevision's runner on the INT8 bundle, the bare runtime on the same artifact, the same runtime on the
FP32 bundle, and edgevision end to end on a 640x480 frame. Ratios:

* runtime overhead: runner / bare runtime, goal <= 1.05x;
* end to end: preprocess + inference + decode/NMS or argmax / runner, goal <= 1.2x (the three CNN bundles);
* INT8 speed-up: same runtime FP32 / INT8, goal >= 1.5x on a CPU with VNNI or AMX ("not measured" elsewhere);
* share of the INT8 GEMM peak measured in the same run (fast-yolo at 448 on OpenVINO: goal >= 50 % with VNNI).

Then the peer made by hand: `ov.convert_model` + `nncf.quantize(model, dataset)` with NNCF's defaults and the same
calibration images, against the intel-npu bundle: speed interleaved, accuracy on the recipe's eval set.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from edgevision.check.bench import E2E_FRAME, interleaved, latency_stats
from edgevision.check.peaks import measure_peaks
from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.export import export_bundle
from edgevision.hardware import cpu_info, cpu_line
from edgevision.ops.preprocess import prepare
from edgevision.predictor import Predictor
from edgevision.runtime.base import open_runner

OUT = Path(__file__).resolve().parent / "out" / "cpus"
TARGETS = {"cpu": "onnxruntime", "intel-npu": "openvino", "rpi": "litert"}


def bundle(model: str, target: str, precision: str):
    """The bundle from an earlier run of this script when this edgevision made it (it records MACs), else a new one."""
    from edgevision.bundle import load_bundle

    path = OUT / f"{model}-{target}-{precision}"
    if (path / "edgevision.json").is_file() and load_bundle(path).meta.macs:
        return load_bundle(path)
    return export_bundle(model, target, precision, path, random_weights=(model == "fast-yolo"),
                         measure_reference=False, golden=0, force=True)


def bare_call(b, runtime: str, threads: int, batch: np.ndarray):
    """The runtime used as its own documentation shows, on the same artifact with the same settings."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        from edgevision.runtime.onnxruntime import emulates_exact_int8, session_options

        opts = session_options(threads, exact_int8=emulates_exact_int8(b), spinning=False)
        sess = ort.InferenceSession(str(b.graph_path("model")), opts, providers=["CPUExecutionProvider"])
        feed = {b.meta.graphs["model"].input("image").bound_name: batch}
        return lambda: sess.run(None, feed)
    if runtime == "openvino":
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if b.meta.precision in ("fp32", "int8"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        request = ov.Core().compile_model(str(b.graph_path("model")), "CPU", config).create_infer_request()
        name = b.meta.graphs["model"].input("image").bound_name
        return lambda: request.infer({name: batch}, share_inputs=True)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(b.graph_path("model")), num_threads=threads)
    interp.allocate_tensors()
    inputs = {d["name"]: d for d in interp.get_input_details()}
    inp, outs = inputs[b.meta.graphs["model"].input("image").bound_name], interp.get_output_details()
    nchw = any(d.get("layout") == "NCHW" for d in (b.meta.graphs["model"].artifact_io or {}).get("inputs", []))
    scale, zero = inp["quantization"]
    dtype = np.dtype(inp["dtype"])

    def call():  # what a LiteRT user does per frame: quantize the input, invoke, dequantize the outputs
        x = batch.transpose(0, 3, 1, 2) if nchw else batch
        if dtype.kind in "iu" and scale:
            x = np.clip(np.rint(x / scale) + zero, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
        interp.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=dtype))
        interp.invoke()
        results = []
        for o in outs:
            y = interp.get_tensor(o["index"])
            s, z = o["quantization"]
            results.append((y.astype(np.float32) - z) * s if np.dtype(o["dtype"]).kind in "iu" and s else y)
        return results

    return call


def runner(b, runtime: str, threads: int):
    """edgevision's runner; ONNX Runtime sessions without spinning worker threads, on both sides of every ratio:
    with spinning, two sessions in one process steal each other's cores (2.2 ms alone, 3.1-4.0 ms side by
    side for the demo detector), which would measure the harness, not the runner."""
    if runtime == "onnxruntime":
        from edgevision.runtime.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(b, threads, spinning=False)
    return open_runner(b, runtime, threads)


def measure(model: str, target: str, runs: int, threads: int, peaks: dict) -> dict:
    runtime = TARGETS[target]
    int8, fp32 = bundle(model, target, "int8"), bundle(model, target, "fp32")
    size = int8.meta.imgsz
    batch = np.ascontiguousarray(prepare(render_scene(0, SceneSpec(size=(size, size))).image, size)[0][None])
    frame = render_scene(1, SceneSpec(size=E2E_FRAME)).image
    r8, r32 = runner(int8, runtime, threads), runner(fp32, runtime, threads)
    predictor = Predictor(int8, runner=r8)
    feed = {"image": batch}
    fns = {"runner int8": lambda: r8.run("model", feed), "bare int8": bare_call(int8, runtime, threads, batch),
           "runner fp32": lambda: r32.run("model", feed), "end to end int8": lambda: predictor.predict(frame)}
    stats = {k: latency_stats(v) for k, v in interleaved(fns, runs, 10).items()}
    med = {k: s["median_ms"] for k, s in stats.items()}
    macs = int8.meta.macs or 0
    rate = macs / (med["runner int8"] / 1000) / 1e9
    return {"model": model, "target": target, "runtime": runtime, "ms": med, "kernels": r8.describe().get("kernels"),
            "overhead": med["runner int8"] / med["bare int8"],
            "end_to_end": med["end to end int8"] / med["runner int8"],
            "int8_speedup": med["runner fp32"] / med["runner int8"], "gmac": macs / 1e9, "gmac_per_s": rate,
            "share_of_int8_peak": rate / peaks["int8"]["gmac_per_s"]}


def peer(model: str, runs: int, threads: int) -> dict:
    """`ov.convert_model` + `nncf.quantize` with defaults, as OpenVINO's documentation shows, against the
    intel-npu bundle: latency interleaved, accuracy on the recipe's eval set against the same FP32 reference."""
    import logging
    import tempfile

    import nncf
    import openvino as ov

    from edgevision.check.compare import _eval_set_for
    from edgevision.check.reference import reference_runner
    from edgevision.check.evaluate import ModelIO, evaluate
    from edgevision.config import load_recipe
    from edgevision.data.datasets import calibration_set
    from edgevision.graphs import export_onnx
    from edgevision.models.wrappers import UInt8Input, image_spec
    from edgevision.models.loading import build_model
    from edgevision.models.registry import get_variant

    nncf.set_log_level(logging.ERROR)
    ours = bundle(model, "intel-npu", "int8")
    v = get_variant(model)
    torch_model = build_model(v, weights=None, random_seed=0 if model == "fast-yolo" else None,
                              num_classes=len(v.labels))
    calib = calibration_set(None, v.imgsz, v.stride, v.preprocess.resize, limit=300)
    with tempfile.TemporaryDirectory() as d:
        onnx_path = Path(d) / "fp32.onnx"
        export_onnx(UInt8Input(torch_model, v.preprocess).eval(), onnx_path, inputs=[image_spec(v.imgsz)],
                    output_names=list(getattr(torch_model, "output_names", ["output"])))
        hand = nncf.quantize(ov.convert_model(str(onnx_path)), nncf.Dataset([{"image": b} for b in calib.batches]))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(hand, "CPU", config)
    request = compiled.create_infer_request()

    class HandRunner:
        max_batch = 1

        def run(self, graph, feeds):
            res = request.infer(feeds)
            return {o.get_any_name(): np.array(res[o]) for o in compiled.outputs}

    r8 = open_runner(ours, "openvino", threads)
    size = ours.meta.imgsz
    batch = np.ascontiguousarray(prepare(render_scene(0, SceneSpec(size=(size, size))).image, size)[0][None])
    hand_runner = HandRunner()
    stats = {k: latency_stats(t) for k, t in interleaved({"edgevision intel-npu int8": lambda: r8.run("model", {"image": batch}),
                                                          "ov.convert_model + nncf.quantize defaults":
                                                              lambda: hand_runner.run("model", {"image": batch})}, runs, 10).items()}
    row = {"model": model, "ms": {k: s["median_ms"] for k, s in stats.items()}}
    if model != "fast-yolo":
        recipe = load_recipe(model, v.task)
        eval_set, _ = _eval_set_for(ours, None, recipe)
        ref = reference_runner(ours, threads=threads)
        io = ModelIO.from_bundle(ours.meta, recipe)
        metric = recipe.primary_metric
        for label, runner in (("edgevision", r8), ("peer", hand_runner)):
            outcome = evaluate({"reference": ref, "artifact": runner}, eval_set, io)
            m = outcome.metrics
            row[f"{label}_delta"] = {k: m["artifact"][k] - m["reference"][k] for k in m["reference"]}
            row["metric"] = metric
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["fast-yolo", "fast-yolo-demo", "mobile-unet"])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--skip-peer", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    cpu = cpu_info()
    vnni = cpu.int8_dot is not None
    print(f"CPU: {cpu_line(cpu.to_json())}; Python {platform.python_version()}")
    peaks = measure_peaks(args.threads, runs=20)
    print("\nSame-run GEMM peaks (best of 20 calls each, 512^3 and 1024^3):\n")
    print("| runtime | precision | n | kernel | GMAC/s |\n|---|---|---|---|---|")
    for c in peaks["candidates"]:
        print(f"| {c['runtime']} | {c['precision']} | {c['n']} | {c['kernel']} | {c['gmac_per_s']:g} |")
    print(f"\nPeaks: FP32 {peaks['fp32']['gmac_per_s']:g} GMAC/s, INT8 {peaks['int8']['gmac_per_s']:g} GMAC/s\n")
    print("| model | target (runtime) | INT8 ms | bare ms | FP32 ms | e2e ms | overhead (<= 1.05) | end to end "
          "(<= 1.2) | INT8 vs FP32 (>= 1.5 with VNNI) | GMAC | GMAC/s | share of INT8 peak | kernels |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for target in args.targets:
            if cpu.onednn_cap and TARGETS[target] != "openvino":
                continue  # the cap reaches oneDNN (OpenVINO) only: these rows would be the uncapped CPU's
            r = measure(model, target, args.runs, args.threads, peaks)
            ms = r["ms"]
            ok = lambda v, good: f"{v:.3f} ({'met' if good else 'NOT met'})"  # noqa: E731
            cnn_goal = vnni and TARGETS[target] != "openvino" or (vnni and cpu.openvino_int8_dot)
            speedup = ok(r["int8_speedup"], r["int8_speedup"] >= 1.5) if cnn_goal else \
                f"{r['int8_speedup']:.3f} (not measured: no VNNI/AMX here)"
            print(f"| {model} | {target} ({r['runtime']}) | {ms['runner int8']:.2f} | {ms['bare int8']:.2f} | "
                  f"{ms['runner fp32']:.2f} | {ms['end to end int8']:.2f} | {ok(r['overhead'], r['overhead'] <= 1.05)} "
                  f"| {ok(r['end_to_end'], r['end_to_end'] <= 1.2)} | {speedup} | {r['gmac']:.3f} | "
                  f"{r['gmac_per_s']:.1f} | {r['share_of_int8_peak']:.0%} | {r['kernels']} |", flush=True)
    if args.skip_peer:
        return
    print("\nPeer made by hand (OpenVINO's documented path, NNCF defaults, same calibration images) vs the "
          "intel-npu bundle:\n")
    print("| model | edgevision ms | peer ms | speed ratio (peer / ours, >= 1) | edgevision delta | peer delta |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        row = peer(model, args.runs, args.threads)
        ours_ms, peer_ms = row["ms"].values()
        fmt = lambda d: ", ".join(f"{k} {v:+.2f}" for k, v in d.items()) if d else "n/a (random weights)"  # noqa: E731
        print(f"| {model} | {ours_ms:.2f} | {peer_ms:.2f} | {peer_ms / ours_ms:.3f} | "
              f"{fmt(row.get('edgevision_delta'))} | {fmt(row.get('peer_delta'))} |", flush=True)


if __name__ == "__main__":
    main()
