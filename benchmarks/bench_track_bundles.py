"""Tracker bundles on this machine: frames per second with 1, 2, 4 and 8 objects, per-graph latency, and RSS over a
long stream, side by side in one process.

    python benchmarks/bench_track_bundles.py BUNDLE [BUNDLE ...] [--objects 1 2 4 8] [--frames 60]
    python benchmarks/bench_track_bundles.py BUNDLE --rss-frames 10000

Every (bundle, object count) pair has its own Tracker, fed the frames of a looping synthetic clip; the pairs are
visited round-robin in blocks of frames (each block after one untimed frame), so a noisy spell hits them all.
Timing starts once the memory bank is full (after 8 frames). A frame's time is the whole ``Tracker.track``
call: the image encoder once, then per object memory attention, decoder and memory encoder, plus the bank on
the CPU. Per-graph figures are medians of the graph calls inside those frames. The same-run FP32 GEMM peak is
measured first; GMAC/s of each bundle's frame is reported against it.

``--rss-frames N``: one object tracked for N frames on the first bundle; RSS at frame 100 and at the end (the
memory bank is bounded, so it must stay flat), peak RSS against the target profile's memory budget.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import defaultdict

import numpy as np

from edgevision.bundle import load_bundle
from edgevision.check.peaks import measure_peaks
from edgevision.config import get_target
from edgevision.data.tracking_clips import ClipSpec, render_clip
from edgevision.hardware import cpu_info, cpu_line, rss_mb
from edgevision.tracker import GRAPH_NAMES, Tracker

WARM_FRAMES = 8  # the bank holds 6 recent frames: full after these
BLOCK = 5


def clip_frames(size: int, seed: int = 20_000_011) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    clip = render_clip(seed, ClipSpec(size=size, length=24, objects=(4, 4)))
    boxes = []
    for k in range(clip.masks.shape[1]):
        ys, xs = np.nonzero(clip.masks[0, k])
        if len(xs) >= 30:
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return clip.frames, boxes


class Timed:
    """A tracker over a bundle whose graph calls are timed."""

    def __init__(self, bundle, objects: int, frames: np.ndarray, boxes: list, threads: int | None) -> None:
        self.tracker = Tracker(bundle, threads=threads)
        self.graph_ms: dict[str, list[float]] = defaultdict(list)
        inner = dict(self.tracker.graphs)

        def timed(name):
            def call(feeds):
                t0 = time.perf_counter()
                out = inner[name](feeds)
                self.graph_ms[name].append((time.perf_counter() - t0) * 1000)
                return out
            return call

        self.tracker.graphs = {name: timed(name) for name in GRAPH_NAMES}
        self.frames, self.i = frames, 0
        for k in range(objects):  # more objects than the clip has: boxes repeat (the cost is the same)
            self.tracker.add_prompt(frames[0], k + 1, box=boxes[k % len(boxes)])
        for _ in range(WARM_FRAMES):
            self.step()
        self.graph_ms.clear()
        self.frame_ms: list[float] = []

    def step(self) -> float:
        self.i += 1
        t0 = time.perf_counter()
        self.tracker.track(self.frames[self.i % len(self.frames)])
        return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--frames", type=int, default=60, help="timed frames per (bundle, objects)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rss-frames", type=int, default=0)
    args = ap.parse_args()
    import onnxruntime as ort

    print(f"CPU: {cpu_line(cpu_info().to_json())}; Python {platform.python_version()}; onnxruntime {ort.__version__}")
    bundles = [load_bundle(b) for b in args.bundles]
    if args.rss_frames:
        rss_run(bundles[0], args.rss_frames, args.threads)
        return
    peaks = measure_peaks(args.threads or 2, runs=20)
    peak = peaks["fp32"]["gmac_per_s"]
    print(f"same-run FP32 GEMM peak: {peak} GMAC/s")
    runs = {}
    for b in bundles:
        frames, boxes = clip_frames(b.meta.imgsz)
        for n in args.objects:
            runs[(b, n)] = Timed(b, n, frames, boxes, args.threads)
    keys = list(runs)
    visit = 0
    while any(len(r.frame_ms) < args.frames for r in runs.values()):
        for j in range(len(keys)):
            r = runs[keys[(visit + j) % len(keys)]]
            if len(r.frame_ms) >= args.frames:
                continue
            r.step()  # untimed lead-in: the previous runner's thread pool winds down
            for _ in range(min(BLOCK, args.frames - len(r.frame_ms))):
                r.frame_ms.append(r.step())
        visit += 1
    print("\n| bundle | precision | objects | frame ms (median) | FPS | image_encoder ms | memory_attention ms | "
          "mask_decoder ms | memory_encoder ms | GMAC/frame | share of FP32 peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (b, n), r in runs.items():
        med = float(np.median(r.frame_ms))
        per = {g: float(np.median(r.graph_ms[g])) for g in GRAPH_NAMES}
        macs = b.meta.graphs["image_encoder"].macs + n * sum(b.meta.graphs[g].macs for g in GRAPH_NAMES[1:])
        rate = macs / (med / 1000) / 1e9
        print(f"| {b.meta.model} | {b.meta.target} {b.meta.precision} | {n} | {med:.1f} | {1000 / med:.1f} | "
              + " | ".join(f"{per[g]:.1f}" for g in GRAPH_NAMES)
              + f" | {macs / 1e9:.2f} | {rate / peak * 100:.0f} % |")


def rss_run(bundle, frames_total: int, threads: int | None) -> None:
    frames, boxes = clip_frames(bundle.meta.imgsz)
    tracker = Tracker(bundle, threads=threads)
    tracker.add_prompt(frames[0], 1, box=boxes[0])
    marks = {}
    peak = rss_mb()
    t0 = time.perf_counter()
    for i in range(1, frames_total + 1):
        tracker.track(frames[i % len(frames)])
        peak = max(peak, rss_mb()) if i % 10 == 0 else peak
        if i == 100 or i % 1000 == 0 or i == frames_total:
            marks[i] = rss_mb()
            print(f"frame {i}: RSS {marks[i]:.1f} MB ({(time.perf_counter() - t0) / i * 1000:.1f} ms/frame)",
                  flush=True)
    budget = get_target(bundle.meta.target).memory_budget_mb
    growth = marks[frames_total] - marks[100]
    print(f"\n{bundle.meta.model} {bundle.meta.target} {bundle.meta.precision}: RSS {marks[100]:.1f} MB at frame 100, "
          f"{marks[frames_total]:.1f} MB at frame {frames_total} ({growth:+.1f} MB); peak {peak:.1f} MB of the "
          f"profile's {budget} MB budget; memory bank {tracker.tracks[1].bank.nbytes() / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
