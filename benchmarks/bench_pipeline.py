"""Camera-pipeline throughput: bare inference vs the naive serial loop vs the edgevision pipeline.

    python benchmarks/bench_pipeline.py [--frames 300] [--rounds 3] [--model fast-yolo --imgsz 448]

On a generated 640x480 video with the INT8 intel-npu bundle (random init is fine for throughput), in one
process, alternating rounds:
  (a) bare inference over pre-processed tensors (the upper bound);
  (b) the naive serial loop a user writes: read, preprocess, infer, decode+NMS, draw, write;
  (c) the edgevision Pipeline doing the same work (--every-frame, video sink, no display), for each split of
      the 2 cores between inference threads and the other stages.
Reports frames/s, (c)/(b), (c)/(a) and capture-to-output p50/p99.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgevision.data.video import write_video
from edgevision.export import export_bundle
from edgevision.pipeline import Pipeline, VideoFileSink, open_source
from edgevision.pipeline.render import draw_panel, draw_result
from edgevision.predictor import Predictor


def naive_loop(predictor: Predictor, video: Path, out: Path) -> float:
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    writer = None
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        batch, geo = predictor.preprocess(rgb)
        outputs = predictor.infer(batch)
        result = predictor.postprocess({k: v[0] for k, v in outputs.items()}, geo)
        draw_result(frame, result, predictor.labels)
        draw_panel(frame, [f"frame {n}"])
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
        n += 1
    cap.release()
    writer.release()
    return n / (time.perf_counter() - t0)


def pipeline_run(predictor: Predictor, video: Path, out: Path) -> tuple[float, dict]:
    summary = Pipeline(open_source(str(video)), predictor, [VideoFileSink(out, 30)], realtime=False).run(
        handle_signals=False)
    return summary["frames_processed"] / summary["duration_s"], summary


def bare(predictor: Predictor, batches: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for b in batches:
        predictor.infer(b)
    return len(batches) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fast-yolo")
    ap.add_argument("--imgsz", type=int, default=448)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "in.mp4"
        write_video(video, frames=args.frames, seed=0)
        bundle = export_bundle(args.model, "intel-npu", "int8", tmp / "bundle", imgsz=args.imgsz,
                               random_weights=args.model == "fast-yolo", measure_reference=False)
        cap = cv2.VideoCapture(str(video))
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        splits = {1: Predictor(bundle, threads=1), 2: Predictor(bundle, threads=2)}
        batches = [splits[2].preprocess(f)[0] for f in frames]
        results = {"a": [], "b": [], **{f"c{k}": [] for k in splits}}
        lat = {k: [] for k in splits}
        for r in range(args.rounds):
            results["a"].append(bare(splits[2], batches))
            results["b"].append(naive_loop(splits[2], video, tmp / "naive.mp4"))
            for k, p in splits.items():
                fps, summary = pipeline_run(p, video, tmp / f"pipe{k}.mp4")
                results[f"c{k}"].append(fps)
                lat[k].append(summary["latency_ms"]["end_to_end"])
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} fps" for k, v in results.items()), flush=True)
        med = {k: statistics.median(v) for k, v in results.items()}
        best = max(splits, key=lambda k: med[f"c{k}"])
        print(f"\n{args.model} at {args.imgsz}, INT8 OpenVINO (intel-npu bundle on this CPU), {args.frames} frames of "
              f"640x480, median of {args.rounds} rounds\n")
        print("| loop | frames/s | vs (b) | vs (a) | capture->output p50 / p99 ms |")
        print("|---|---|---|---|---|")
        print(f"| (a) bare inference, 2 threads | {med['a']:.1f} | {med['a'] / med['b']:.2f}x | 1.00x | - |")
        print(f"| (b) naive serial loop, 2 inference threads | {med['b']:.1f} | 1.00x | {med['b'] / med['a']:.2f}x | - |")
        for k in splits:
            p50 = statistics.median(x["p50_ms"] for x in lat[k])
            p99 = statistics.median(x["p99_ms"] for x in lat[k])
            print(f"| (c) edgevision pipeline, {k} inference thread(s) + stage threads | {med[f'c{k}']:.1f} | "
                  f"{med[f'c{k}'] / med['b']:.2f}x | {med[f'c{k}'] / med['a']:.2f}x | {p50:.1f} / {p99:.1f} |")
        print(f"\nbest split on this machine: {best} inference thread(s)")


if __name__ == "__main__":
    main()
