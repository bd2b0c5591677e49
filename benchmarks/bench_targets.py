"""Every target x precision for the two demo models: latency, speed-up vs PyTorch eager and accuracy delta.

    python benchmarks/bench_targets.py [--runs 40] [--skip-accuracy]

Latency: artifact and PyTorch eager FP32 interleaved in one process (the bundle's own runtime; jetson bundles
run on ONNX Runtime here, the host stand-in for TensorRT). Accuracy: `edgevision check` on the synthetic eval
set (delta of the recipe's primary metric and agreement). Also the rpi goal: the INT8 `fast-yolo` bundle at
448 (random init) on XNNPACK with 2 threads against PyTorch eager.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgevision.check.bench import bench_bundle
from edgevision.check.compare import check_bundle
from edgevision.config import get_target, load_recipe
from edgevision.export import export_bundle

TARGETS = ["cpu", "intel-npu", "rpi", "jetson"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--models", nargs="*", default=["fast-yolo-demo", "mobile-unet"],
                    help="models for the table; none: only the rpi goal")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("| model | target | precision | runtime | artifact ms | PyTorch ms | speed-up | primary metric delta "
              "| agreement | check |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for model in args.models:
            for target in TARGETS:
                for precision in get_target(target).precisions:
                    b = export_bundle(model, target, precision, tmp / f"{model}-{target}-{precision}",
                                      measure_reference=False)
                    speed = bench_bundle(b, runs=args.runs, warmup=5, threads=args.threads)
                    delta = agreement = verdict = "-"
                    if not args.skip_accuracy:
                        report = check_bundle(b, threads=args.threads)
                        metric = load_recipe(model, b.meta.task).primary_metric
                        delta = f"{report['metrics']['delta'][metric]:+.2f} {metric}"
                        agreement = " ".join(f"{v:.1f}" for v in report["agreement"].values())
                        verdict = "pass" if report["passed"] else "FAIL"
                    lat = speed["latency"]
                    print(f"| {model} | {target} | {precision} | {speed['runtime']['runtime']} | "
                          f"{lat['artifact']['median_ms']:.2f} | {lat['pytorch_fp32']['median_ms']:.2f} | "
                          f"{speed['ratios']['speedup_vs_pytorch']:.2f}x | {delta} | {agreement} | {verdict} |",
                          flush=True)
        b = export_bundle("fast-yolo", "rpi", "int8", tmp / "fast-yolo-rpi-int8", random_weights=True,
                          measure_reference=False)
        speed = bench_bundle(b, runs=args.runs, warmup=5, threads=2)
        lat = speed["latency"]
        print(f"\nrpi goal: fast-yolo 448 INT8 (random init), LiteRT XNNPACK 2 threads: "
              f"{lat['artifact']['median_ms']:.2f} ms vs PyTorch eager {lat['pytorch_fp32']['median_ms']:.2f} ms = "
              f"{speed['ratios']['speedup_vs_pytorch']:.2f}x")


if __name__ == "__main__":
    main()
