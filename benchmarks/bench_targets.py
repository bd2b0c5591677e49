"""Every target x precision for the two demo models: latency, speed-up vs PyTorch eager and accuracy delta.

    python benchmarks/bench_targets.py                    # both halves
    python benchmarks/bench_targets.py --skip-latency     # accuracy only (deterministic: fine on a busy machine)
    python benchmarks/bench_targets.py --skip-accuracy    # latency only (run it on a quiet machine)

Latency: artifact and PyTorch eager FP32 interleaved in one process (the bundle's own runtime; jetson bundles
run on ONNX Runtime here, the host stand-in for TensorRT). Accuracy: `edgevision check` on the recipe's
synthetic eval set (delta of the recipe's metrics and agreement). Each run merges what it measured into
benchmarks/out/targets.json, and prints (and writes to benchmarks/out/targets.md) the table of everything
measured so far. Also the speed goals of the issues, each an INT8 `fast-yolo` bundle at 448 (random init)
against PyTorch eager, 2 threads: intel-npu (OpenVINO, >= 9x) and rpi (LiteRT XNNPACK, >= 7.5x).

    python benchmarks/bench_targets.py --targets intel-npu --models   # only the intel-npu goal
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from edgevision.check.bench import bench_bundle
from edgevision.check.compare import check_bundle
from edgevision.config import get_target, load_recipe
from edgevision.export import export_bundle

TARGETS = ["cpu", "intel-npu", "rpi", "jetson"]
GOALS = {"intel-npu": ("OpenVINO on this CPU", 9.0), "rpi": ("LiteRT XNNPACK", 7.5)}
OUT = Path(__file__).resolve().parent / "out"


def _merge(store: Path, key: str, values: dict) -> dict:
    rows = json.loads(store.read_text()) if store.is_file() else {}
    rows.setdefault(key, {}).update(values)
    tmp = store.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, store)
    return rows


def _table(rows: dict) -> str:
    lines = ["| model | target | precision | runtime | artifact ms | PyTorch ms | speed-up | metric delta (points) "
             "| agreement | check |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in rows.items():
        model, target, precision = key.split("/")
        lat = (f"{r['artifact_ms']:.2f} | {r['pytorch_ms']:.2f} | {r['speedup']:.2f}x" if "artifact_ms" in r
               else "- | - | -")
        acc = (f"{r['delta']} | {r['agreement']} | {r['verdict']}" if "delta" in r else "- | - | -")
        lines.append(f"| {model} | {target} | {precision} | {r.get('runtime', '-')} | {lat} | {acc} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--models", nargs="*", default=["fast-yolo-demo", "mobile-unet"],
                    help="models for the table; none: only the speed goals")
    ap.add_argument("--targets", nargs="+", default=TARGETS, choices=TARGETS,
                    help="target families to measure (rows of other targets already stored are kept)")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    store = OUT / "targets.json"
    rows: dict = json.loads(store.read_text()) if store.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for model in args.models:
            for target in args.targets:
                for precision in get_target(target).precisions:
                    b = export_bundle(model, target, precision, tmp / f"{model}-{target}-{precision}",
                                      measure_reference=False)
                    key = f"{model}/{target}/{precision}"
                    if not args.skip_latency:
                        speed = bench_bundle(b, runs=args.runs, warmup=5, threads=args.threads)
                        lat = speed["latency"]
                        rows = _merge(store, key, {"runtime": speed["runtime"]["runtime"],
                                                   "artifact_ms": lat["artifact"]["median_ms"],
                                                   "pytorch_ms": lat["pytorch_fp32"]["median_ms"],
                                                   "speedup": speed["ratios"]["speedup_vs_pytorch"]})
                    if not args.skip_accuracy:
                        report = check_bundle(b, threads=args.threads)
                        recipe = load_recipe(model, b.meta.task)
                        deltas = report["metrics"]["delta"]
                        rows = _merge(store, key, {
                            "runtime": report["runtime"]["runtime"],
                            "delta": " / ".join(f"{deltas[m]:+.2f} {m}" for m in recipe.tolerances_for(
                                b.meta.target_family, precision) if m in deltas),
                            "agreement": " ".join(f"{v:.1f}" for v in report["agreement"].values()),
                            "verdict": "pass" if report["passed"] else "FAIL"})
                    print(key, rows.get(key), flush=True)
        for target in [t for t in args.targets if t in GOALS and not args.skip_latency]:
            runtime, wanted = GOALS[target]
            b = export_bundle("fast-yolo", target, "int8", tmp / f"fast-yolo-{target}-int8", random_weights=True,
                              measure_reference=False)
            speed = bench_bundle(b, runs=args.runs, warmup=5, threads=2)
            lat = speed["latency"]
            ratio = speed["ratios"]["speedup_vs_pytorch"]
            goal = (f"{target} goal: fast-yolo 448 INT8 (random init), {runtime}, 2 threads: "
                    f"{lat['artifact']['median_ms']:.2f} ms vs PyTorch eager {lat['pytorch_fp32']['median_ms']:.2f} "
                    f"ms = {ratio:.2f}x (goal {wanted}x: {'met' if ratio >= wanted else 'not met'})")
            (OUT / f"{target}_goal.md").write_text(goal + "\n")
            print("\n" + goal)
    if rows:
        table = _table(rows)
        (OUT / "targets.md").write_text(table + "\n")
        print("\n" + table)


if __name__ == "__main__":
    main()
