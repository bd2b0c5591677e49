"""Backends side by side against PyTorch eager FP32, batch 1, in one process (interleaved runs).

    python benchmarks/bench_backends.py [--runs 60] [--models fast-yolo fast-yolo-demo mobile-unet]

For each model: PyTorch eager FP32, ONNX Runtime FP32, OpenVINO FP32, OpenVINO INT8 (NNCF, the intel-npu
bundle on this CPU), ONNX Runtime QDQ INT8 with uint8 activations (the cpu bundle) and with symmetric int8
activations (the jetson bundle, as ONNX Runtime runs it), all through edgevision's own runtime layer. Then, interleaved
on their own, end-to-end detection/segmentation latency on a 640x480 frame (preprocess + infer + decode/NMS)
against bare inference for the intel-npu INT8 bundle. Prints a markdown table per model.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from edgevision.check.bench import E2E_FRAME, interleaved, latency_stats
from edgevision.check.reference import reference_runner
from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.export import export_bundle
from edgevision.ops.preprocess import prepare
from edgevision.predictor import Predictor
from edgevision.runtime.base import open_runner

ROWS = [  # label, target, precision, runtime
    ("ONNX Runtime FP32", "cpu", "fp32", "onnxruntime"),
    ("OpenVINO FP32", "cpu", "fp32", "openvino"),
    ("OpenVINO INT8 via NNCF (intel-npu bundle)", "intel-npu", "int8", "openvino"),
    ("ONNX Runtime QDQ, uint8 act / int8 weights (cpu bundle)", "cpu", "int8", "onnxruntime"),
    ("ONNX Runtime QDQ, symmetric int8/int8 (jetson bundle)", "jetson", "int8", "onnxruntime"),
]


def bench_model(model: str, runs: int, warmup: int, threads: int, workdir: Path) -> str:
    random = model == "fast-yolo"
    bundles = {}
    for label, target, precision, _ in ROWS:
        key = (target, precision)
        if key not in bundles:
            bundles[key] = export_bundle(model, target, precision, workdir / f"{model}-{target}-{precision}",
                                         random_weights=random, measure_reference=False, force=True)
    first = next(iter(bundles.values()))
    imgsz = first.meta.imgsz
    batch = np.ascontiguousarray(prepare(render_scene(0, SceneSpec(size=(imgsz, imgsz))).image, imgsz)[0][None])
    fns = {}
    ref = reference_runner(first, threads=threads)
    fns["PyTorch eager FP32"] = lambda: ref.run("model", {"image": batch})
    runners = {}
    for label, target, precision, runtime in ROWS:
        r = open_runner(bundles[(target, precision)], runtime, threads)
        runners[label] = r
        fns[label] = (lambda r=r: r.run("model", {"image": batch}))
    npu = bundles[("intel-npu", "int8")]
    predictor = Predictor(npu, runner=runners[ROWS[2][0]])
    frame = render_scene(1, SceneSpec(size=E2E_FRAME)).image
    times = interleaved(fns, runs, warmup)
    # End to end against bare inference on their own: with seven runtimes' worker pools in the rotation, the
    # pools still spinning from the previous backend inflate whichever of the two runs next.
    bare_fn = fns[ROWS[2][0]]
    pair = interleaved({"bare": bare_fn, "e2e": lambda: predictor.predict(frame)}, runs, warmup)
    stats = {k: latency_stats(v) for k, v in times.items()}
    base = stats["PyTorch eager FP32"]["median_ms"]
    lines = [f"### {model} at {imgsz} ({'random init' if random else 'bundled weights'}), {threads} threads, "
             f"{runs} interleaved runs", "", "| backend | median ms | p90 ms | min ms | speed-up vs PyTorch |",
             "|---|---|---|---|---|"]
    for k, s in stats.items():
        lines.append(f"| {k} | {s['median_ms']:.2f} | {s['p90_ms']:.2f} | {s['min_ms']:.2f} | "
                     f"{base / s['median_ms']:.2f}x |")
    pair = {k: latency_stats(v) for k, v in pair.items()}
    bare, e2e = pair["bare"]["median_ms"], pair["e2e"]["median_ms"]
    lines += ["", f"End to end on a 640x480 frame (preprocess + infer + decode/NMS or argmax) against bare "
                  f"inference, intel-npu INT8, the two interleaved on their own: {e2e:.2f} ms vs {bare:.2f} ms "
                  f"(min {pair['e2e']['min_ms']:.2f} vs {pair['bare']['min_ms']:.2f}) = {e2e / bare:.3f} "
                  f"({(e2e / bare - 1) * 100:+.1f} %)", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["fast-yolo", "fast-yolo-demo", "mobile-unet"])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            print(bench_model(model, args.runs, args.warmup, args.threads, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
