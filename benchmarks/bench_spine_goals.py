"""The spine issue's two latency goals, measured the way `edgevision bench` measures them, several times over.

    python benchmarks/bench_spine_goals.py [--rounds 10 --runs 60]

Goals: the intel-npu INT8 `fast-yolo` bundle (448, random init) at >= 9x PyTorch eager FP32, and end to end
(preprocess a 640x480 frame + infer + decode + NMS) within 20 % of bare inference. Each round is one
`edgevision bench` (artifact, end to end and PyTorch interleaved in one process); this VM's speed drifts from
minute to minute and PyTorch eager drifts most (24-52 ms for this model), so one round says little. The script
prints every round and the median and range over rounds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgevision.check.bench import bench_bundle
from edgevision.export import export_bundle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--pause", type=float, default=5.0, help="seconds between rounds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_bundle("fast-yolo", "intel-npu", "int8", Path(tmp) / "fast-yolo-intel-npu-int8",
                               random_weights=True, measure_reference=False)
        print(f"fast-yolo 448 intel-npu INT8 (random init, NNCF preset "
              f"{bundle.meta.quantization['preset']}), `edgevision bench --runs {args.runs}` x {args.rounds}\n")
        print("| round | artifact median ms | PyTorch eager median ms | speed-up | end to end / bare |")
        print("|---|---|---|---|---|")
        speedups, e2e = [], []
        for i in range(args.rounds):
            r = bench_bundle(bundle, runs=args.runs, warmup=10, threads=2)
            lat, ratios = r["latency"], r["ratios"]
            speedups.append(ratios["speedup_vs_pytorch"])
            e2e.append(ratios["end_to_end_over_artifact"])
            print(f"| {i + 1} | {lat['artifact']['median_ms']:.2f} | {lat['pytorch_fp32']['median_ms']:.2f} | "
                  f"{speedups[-1]:.2f}x | {e2e[-1]:.3f} |", flush=True)
            time.sleep(args.pause)
        s, e = np.array(speedups), np.array(e2e)
        print(f"\nspeed-up over {args.rounds} rounds: median {np.median(s):.2f}x, range {s.min():.2f}-{s.max():.2f}x, "
              f"{int((s >= 9).sum())} of {args.rounds} rounds >= 9x")
        print(f"end to end / bare over {args.rounds} rounds: median {np.median(e):.3f}, range {e.min():.3f}-"
              f"{e.max():.3f}, {int((e <= 1.2).sum())} of {args.rounds} rounds within 20 %")


if __name__ == "__main__":
    main()
