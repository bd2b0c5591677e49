"""SAM 2-style tracker graphs: per-graph latency on ONNX Runtime FP32 and PyTorch eager, side by side in one
process, and the frame time of the streaming tracker with one object, on whatever CPU runs it.

    python benchmarks/bench_tracker.py [--sizes 256 512 1024] [--pools 1 2] [--runs 10]

Model: SAM 2.1 hiera-tiny's architecture with random weights (speed does not depend on them), memory pooled
``--pools`` (1: SAM 2's full memory; 2: EfficientTAM-style 2x2). The memory attention runs with a full bank:
4 conditioning slots + 6 recent frames and 19 pointers, all valid, as in steady-state tracking. GMAC per graph
comes from the exported graph (Conv, MatMul, Gemm); shares are of the same-run GEMM peak.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgevision.check.bench import interleaved, latency_stats
from edgevision.check.peaks import measure_peaks, share_of_peak
from edgevision.graphs import count_macs, export_onnx
from edgevision.hardware import cpu_info, cpu_line
from edgevision.models.registry import IMAGENET_PLAIN
from edgevision.models.sam2 import Sam2, torch_graphs
from edgevision.tracker import Tracker


def feeds_for(graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for t in graph.inputs:
        if t.dtype == "uint8":
            out[t.name] = rng.integers(0, 256, t.shape, dtype=np.uint8)
        elif t.dtype == "int64":
            out[t.name] = np.minimum(np.arange(t.shape[1]), 6).reshape(t.shape).astype(np.int64)
        elif t.name.endswith("valid") or t.name == "binarize":
            out[t.name] = np.ones(t.shape, np.float32)
        elif t.name == "point_labels":
            out[t.name] = np.array([[2, 3, -1] + [-2] * (t.shape[1] - 3)], np.float32)
        else:
            out[t.name] = rng.standard_normal(t.shape).astype(np.float32)
    return out


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--pools", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_line(cpu_info().to_json())}; Python {platform.python_version()}; torch {torch.__version__}; "
          f"onnxruntime {ort.__version__}")
    peaks = measure_peaks(args.threads, runs=20)
    print(f"same-run FP32 GEMM peak: {peaks['fp32']['gmac_per_s']} GMAC/s")
    rows = []
    rng = np.random.default_rng(0)
    for size in args.sizes:
        for pool in args.pools:
            torch.manual_seed(0)
            model = Sam2(img_size=size, memory_pool=pool).eval()
            graphs = model.export_graphs(size, IMAGENET_PLAIN)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            with tempfile.TemporaryDirectory() as tmp:
                sessions, macs = {}, {}
                for g in graphs:
                    path = Path(tmp) / f"{g.name}.onnx"
                    export_onnx(g.module, path, inputs=g.inputs, output_names=g.outputs)
                    macs[g.name] = count_macs(path)
                    sessions[g.name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                for g in graphs:
                    feed = feeds_for(g, rng)
                    tensors = [torch.from_numpy(feed[t.name]) for t in g.inputs]
                    s = sessions[g.name]

                    def eager(m=g.module, ts=tensors):
                        with torch.inference_mode():
                            m(*ts)

                    fns = {"onnxruntime": lambda s=s, f=feed: s.run(None, f), "eager": eager}
                    times = interleaved(fns, args.runs, 2)
                    med = {k: latency_stats(v)["median_ms"] for k, v in times.items()}
                    of_peak = share_of_peak(macs[g.name], med["onnxruntime"], "fp32", peaks)
                    share = of_peak["share"] if of_peak else None
                    rows.append((size, pool, g.name, macs[g.name] / 1e9, med["onnxruntime"], med["eager"], share))
                    print(f"{size:5d} pool {pool} {g.name:17s} {macs[g.name] / 1e9:7.2f} GMAC  ORT "
                          f"{med['onnxruntime']:9.1f} ms  eager {med['eager']:9.1f} ms"
                          + (f"  {share * 100:5.1f} % of peak" if share else ""), flush=True)
                # the streaming tracker, one object, on ONNX Runtime: steady state after the bank fills
                graph_fns = {n: (lambda s, names: lambda f: dict(zip(names, s.run(names, f))))(
                    sessions[n], [o.name for o in sessions[n].get_outputs()]) for n in sessions}
                g = size // 16 // pool
                tracker = Tracker(graph_fns, size, feature_shape=(64, g, g))
                frame = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                tracker.add_prompt(frame, 1, box=(size * 0.3, size * 0.3, size * 0.6, size * 0.7))
                for _ in range(8):
                    tracker.track(frame)
                t0 = time.perf_counter()
                n = max(3, args.runs // 2)
                for _ in range(n):
                    tracker.track(frame)
                frame_ms = (time.perf_counter() - t0) / n * 1000
                rows.append((size, pool, "tracker frame", None, frame_ms, None, None))
                print(f"{size:5d} pool {pool} tracker frame, 1 object: {frame_ms:.1f} ms ({1000 / frame_ms:.1f} FPS)",
                      flush=True)
    print("\n| input | memory pool | graph | GMAC | ONNX Runtime FP32 ms | PyTorch eager ms | share of peak |")
    print("|---|---|---|---|---|---|---|")
    for size, pool, name, gmac, ort_ms, eager_ms, share in rows:
        print(f"| {size} | {pool}x{pool} | {name} | {'' if gmac is None else f'{gmac:.2f}'} | {ort_ms:.1f} | "
              f"{'' if eager_ms is None else f'{eager_ms:.1f}'} | {'' if share is None else f'{share * 100:.1f} %'} |")


if __name__ == "__main__":
    main()
