"""The ViT issue's speed table: DeiT-Tiny bundles per target, side by side in one process, on whatever CPU runs it.

    python benchmarks/bench_vit.py [--runs 40] [--models deit-tiny deit-tiny-demo] [--targets cpu intel-npu rpi jetson]

Per model and target, one interleaved timing of: edgevision's runner on the INT8 bundle, the same runtime on the
FP32 bundle, and the FP32 PyTorch model in eager mode (the reference runner: uint8 image in, logits out, as the
bundles take it). `deit-tiny` is the 224 px model with random weights (speed does not depend on the weights);
`deit-tiny-demo` is the trained 112 px demo. jetson bundles run on ONNX Runtime here, the host stand-in for
TensorRT: their figures say how the same QDQ graph does on this CPU, not on a Jetson.

Ratios: INT8 over PyTorch eager (reported, not gated); INT8 over the same runtime in FP32 (goal on intel-npu:
>= 1.7x on a CPU with VNNI or AMX); and the share of the INT8 and FP32 GEMM peaks measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from edgevision.check.bench import interleaved, latency_stats
from edgevision.check.peaks import measure_peaks
from edgevision.check.reference import reference_runner
from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.export import export_bundle
from edgevision.hardware import cpu_info, cpu_line
from edgevision.ops.preprocess import prepare
from edgevision.runtime.base import open_runner

OUT = Path(__file__).resolve().parent / "out" / "vit"
RUNTIMES = {"cpu": "onnxruntime", "intel-npu": "openvino", "rpi": "litert", "jetson": "onnxruntime"}
GOAL = ("intel-npu", 1.7)


def bundle(model: str, target: str, precision: str):
    from edgevision.bundle import load_bundle

    path = OUT / f"{model}-{target}-{precision}"
    accuracy_run = OUT.parent / "vit-int8" / path.name  # bench_vit_int8.py's bundle, when it made one
    for known in (path, accuracy_run):
        if (known / "edgevision.json").is_file():
            return load_bundle(known)
    return export_bundle(model, target, precision, path, random_weights=(model == "deit-tiny"),
                         measure_reference=False, golden=0, force=True)


def runner(b, target: str, threads: int):
    if RUNTIMES[target] == "onnxruntime":
        from edgevision.runtime.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(b, threads, spinning=False)  # two sessions side by side: see bench_cpus.runner
    return open_runner(b, None, threads)


def measure(model: str, target: str, runs: int, threads: int, peaks: dict) -> dict:
    int8, fp32 = bundle(model, target, "int8"), bundle(model, target, "fp32")
    size = int8.meta.imgsz
    batch = np.ascontiguousarray(prepare(render_scene(0, SceneSpec(size=(size, size))).image, size)[0][None])
    r8, r32 = runner(int8, target, threads), runner(fp32, target, threads)
    eager = reference_runner(int8, threads=threads)
    feed = {"image": batch}
    fns = {"int8": lambda: r8.run("model", feed), "fp32": lambda: r32.run("model", feed),
           "eager": lambda: eager.run("model", feed)}
    med = {k: latency_stats(v)["median_ms"] for k, v in interleaved(fns, runs, 10).items()}
    macs = int8.meta.macs or 0
    rate = {k: macs / (med[k] / 1000) / 1e9 for k in ("int8", "fp32")}
    return {"model": model, "target": target, "runtime": r8.runtime, "imgsz": size, "ms": med, "gmac": macs / 1e9,
            "vs_eager": med["eager"] / med["int8"], "vs_fp32": med["fp32"] / med["int8"],
            "share_int8": rate["int8"] / peaks["int8"]["gmac_per_s"],
            "share_fp32": rate["fp32"] / peaks["fp32"]["gmac_per_s"],
            "xnnpack": (int8.meta.graphs["model"].quantization or {}).get("xnnpack")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["deit-tiny", "deit-tiny-demo"])
    ap.add_argument("--targets", nargs="+", default=list(RUNTIMES))
    ap.add_argument("--export-only", action="store_true", help="export the bundles (on a busy machine), time nothing")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.export_only:
        for model in args.models:
            for target in args.targets:
                for precision in ("int8", "fp32"):
                    if not (model == "deit-tiny-demo" and precision == "int8"):  # bench_vit_int8.py makes those
                        bundle(model, target, precision)
        return
    cpu = cpu_info()
    print(f"CPU: {cpu_line(cpu.to_json())}; Python {platform.python_version()}")
    peaks = measure_peaks(args.threads, runs=20)
    print(f"Same-run GEMM peaks: FP32 {peaks['fp32']['gmac_per_s']:g} GMAC/s ({peaks['fp32']['kernel']}), "
          f"INT8 {peaks['int8']['gmac_per_s']:g} GMAC/s ({peaks['int8']['kernel']})\n")
    print("| model (px) | target (runtime) | INT8 ms | FP32 ms | eager ms | INT8 vs eager | INT8 vs FP32 | "
          "share of INT8 peak | FP32 share of FP32 peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    notes = []
    for model in args.models:
        for target in args.targets:
            r = measure(model, target, args.runs, args.threads, peaks)
            ms = r["ms"]
            vs_fp32 = f"{r['vs_fp32']:.2f}x"
            if target == GOAL[0]:
                if cpu.int8_dot is not None:
                    vs_fp32 += f" (goal >= {GOAL[1]}: {'met' if r['vs_fp32'] >= GOAL[1] else 'NOT met'})"
                else:
                    vs_fp32 += " (no VNNI/AMX here: goal not applicable)"
            host = " host stand-in" if target == "jetson" else ""
            print(f"| {model} ({r['imgsz']}) | {target} ({r['runtime']}{host}) | {ms['int8']:.2f} | "
                  f"{ms['fp32']:.2f} | {ms['eager']:.2f} | {r['vs_eager']:.2f}x | {vs_fp32} | "
                  f"{r['share_int8']:.0%} | {r['share_fp32']:.0%} |", flush=True)
            if r["xnnpack"]:
                x = r["xnnpack"]
                notes.append(f"{model} rpi int8: XNNPACK runs {x['delegated']} of {x['ops']} ops in "
                             f"{x['partitions']} partition(s); left to TFLite: {x['not_delegated'] or 'none'}")
    for note in notes:
        print(f"\n- {note}")


if __name__ == "__main__":
    main()
