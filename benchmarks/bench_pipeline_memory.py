"""Pipeline memory over a long run: RSS at frame 100 and at frame 10,000 must match (no per-frame growth).

    python benchmarks/bench_pipeline_memory.py [--frames 10000]

A looping in-memory 640x480 source (so decoding cost does not dominate) feeds the INT8 fast-yolo-demo bundle
through the full pipeline with a JSONL sink and an MJPEG server (both on every frame).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2

from edgevision.bundle import load_bundle
from edgevision.data.video import MovingShapesVideo
from edgevision.export import export_bundle
from edgevision.pipeline import JsonlSink, MjpegServer, Pipeline
from edgevision.pipeline.sources import Source, SourceInfo
from edgevision.predictor import Predictor


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class LoopSource(Source):
    def __init__(self, frames, total):
        self.frames, self.total, self.i = frames, total, 0
        self.info = SourceInfo(f"{len(frames)} frames looped to {total}", live=False)

    def open(self):
        self.i = 0

    def read(self):
        if self.i >= self.total:
            return None
        f = self.frames[self.i % len(self.frames)].copy()
        self.i += 1
        return f


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--bundle", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = load_bundle(args.bundle) if args.bundle else export_bundle(
            "fast-yolo-demo", "intel-npu", "int8", tmp / "b", measure_reference=False)
        video = MovingShapesVideo(seed=0)
        frames = [cv2.cvtColor(video.frame(i)[0], cv2.COLOR_RGB2BGR) for i in range(100)]
        marks = {}

        def on_frame(frame):
            n = frame.seq + 1
            if n in (100, 1000, 5000, args.frames):
                marks[n] = rss_mb()

        server = MjpegServer(0)
        pipe = Pipeline(LoopSource(frames, args.frames), Predictor(bundle), [JsonlSink(tmp / "r.jsonl"), server],
                        realtime=False, on_frame=on_frame)
        summary = pipe.run(handle_signals=False)
        print(f"frames processed: {summary['frames_processed']}, fps {summary['fps']}")
        for n, mb in sorted(marks.items()):
            print(f"RSS at frame {n:>6}: {mb:.1f} MB")
        first, last = marks[100], marks[args.frames]
        print(f"growth from frame 100 to {args.frames}: {last - first:+.1f} MB ({(last / first - 1) * 100:+.2f} %)")


if __name__ == "__main__":
    main()
