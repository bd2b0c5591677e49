"""End-to-end and pipeline figures of two commits, each in its own venv, their processes taking turns.

    python benchmarks/bench_regression.py --base /tmp/base --head . [--rounds 6] [--frames 200] [--runs 300]

``--base`` and ``--head`` are checkouts, each with a ``.venv`` where that checkout is installed (pip install -e).
Every round runs one worker process per side (the order alternates between rounds), so both sides see the same
machine state; the same worker, this file with ``--worker``, runs under each side's Python and imports that side's
edgevision. Each side exports its own bundles once (its own bundle format) into ``--work``.

Per side and round the worker measures, for fast-yolo-demo intel-npu int8 (OpenVINO) and cpu int8 (ONNX
Runtime), both at 224 px:
  * end to end: ``Predictor.predict`` on one 640x480 frame (preprocess, infer, decode + NMS), median of --runs;
  * pipeline: frames per second of ``Pipeline`` over a generated 640x480 video (--frames), every frame, video
    sink, no display.
Reports the median over rounds per side and head/base, with the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = [("fast-yolo-demo", "intel-npu", "int8"), ("fast-yolo-demo", "cpu", "int8")]


def worker(work: Path, frames: int, runs: int) -> dict:
    import numpy as np

    from edgevision.data.synthetic import SceneSpec, render_scene
    from edgevision.data.video import write_video
    from edgevision.export import export_bundle
    from edgevision.pipeline import Pipeline, VideoFileSink, open_source
    from edgevision.predictor import Predictor

    work.mkdir(parents=True, exist_ok=True)
    video = work / "clip.mp4"
    if not video.exists():
        write_video(video, frames=frames, size=(480, 640), seed=3)
    frame = render_scene(0, SceneSpec(size=(640, 480))).image
    out = {}
    for model, target, precision in CASES:
        path = work / f"{model}-{target}-{precision}"
        if not path.exists():
            export_bundle(model, target, precision, path, measure_reference=False, golden=0)
        key = f"{target} {precision}"
        with Predictor(path) as p:
            for _ in range(20):
                p.predict(frame)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                p.predict(frame)
                times.append((time.perf_counter() - t0) * 1000)
        out[f"{key} end-to-end ms"] = statistics.median(times)
        predictor = Predictor(path)
        summary = Pipeline(open_source(str(video)), predictor, [VideoFileSink(work / "out.mp4", 30)],
                           realtime=False).run(handle_signals=False)
        predictor.close()
        out[f"{key} pipeline fps"] = summary["frames_processed"] / summary["duration_s"]
    return {k: float(np.round(v, 3)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path)
    ap.add_argument("--head", type=Path, default=Path("."))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-regression"))
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.frames, args.runs)))
        return
    sides = {"base": args.base.resolve(), "head": args.head.resolve()}
    commits = {k: subprocess.run(["git", "-C", str(v), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() for k, v in sides.items()}
    results: dict[str, list[dict]] = {"base": [], "head": []}

    def run_worker(side: str, runs: int) -> dict:
        root = sides[side]
        res = subprocess.run([str(root / ".venv/bin/python"), str(Path(__file__).resolve()), "--worker",
                              str(args.work / side), "--frames", str(args.frames), "--runs", str(runs)],
                             cwd=root, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"{side} worker failed:\n{res.stderr[-3000:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])

    for side in sides:  # exports each side's bundles and the clip, untimed
        run_worker(side, 1)
    for r in range(args.rounds):
        order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
        for side in order:
            results[side].append(run_worker(side, args.runs))
            print(f"round {r + 1} {side}: {results[side][-1]}", flush=True)
    from edgevision.hardware import cpu_info, cpu_line

    print(f"\nCPU: {cpu_line(cpu_info().to_json())}; base {commits['base']}, head {commits['head']}; {args.rounds} rounds, "
          f"{args.runs} end-to-end runs and {args.frames} pipeline frames per round\n")
    print("| figure | base (median of rounds) | head | head / base | goal <= 1.05 |")
    print("|---|---|---|---|---|")
    for key in results["base"][0]:
        base = statistics.median(x[key] for x in results["base"])
        head = statistics.median(x[key] for x in results["head"])
        slower = head / base if key.endswith("ms") else base / head  # > 1 means head is slower
        print(f"| {key} | {base:.3f} | {head:.3f} | {slower:.3f} (slowdown) | {'met' if slower <= 1.05 else 'NOT met'} |")


if __name__ == "__main__":
    main()
