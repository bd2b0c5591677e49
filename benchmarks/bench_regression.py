"""End-to-end and pipeline figures of two commits, each in its own venv, their processes taking turns.

    python benchmarks/bench_regression.py --base /tmp/base --head . [--turns 30]

``--base`` and ``--head`` are checkouts, each with a ``.venv`` where that checkout is installed (pip install -e).
One long-lived worker process per side (this file with ``--worker``, run by that side's Python, importing that
side's edgevision) exports its own bundles (in its own bundle format) and opens them once. The driver then asks the
two workers in turn, one short measurement at a time, alternating which goes first, with a pause between turns so
that neither side's idle worker threads are still spinning when the other starts. Each figure is reported as the
median over turns of the paired ratio head/base, which cancels the VM's minute-to-minute drift (30-50 % here);
medians per side are printed too.

Figures, for fast-yolo-demo intel-npu int8 (OpenVINO) and cpu int8 (ONNX Runtime) at 224 px:
  * end to end: ``Predictor.predict`` on one 640x480 frame (preprocess, infer, decode + NMS), median of 60 runs;
  * pipeline: frames per second of ``Pipeline`` over a generated 640x480 clip (--frames), every frame, video sink,
    no display; once writing MPEG-4 Part 2 with OpenCV (what both commits write: like for like), once with the
    encoder the install picks (since the first-hour issue, H.264 through imageio-ffmpeg's ffmpeg where it is
    installed: an encoder process beside the pipeline on the same cores).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = [("fast-yolo-demo", "intel-npu", "int8"), ("fast-yolo-demo", "cpu", "int8")]
E2E_RUNS = 60


def worker(work: Path, frames: int) -> None:
    """Reads one command a line ("e2e TARGET", "pipeline TARGET ENCODER", "quit"); answers one number a line."""
    from edgevision.data.synthetic import SceneSpec, render_scene
    from edgevision.data.video import write_video
    from edgevision.export import export_bundle
    from edgevision.predictor import Predictor

    work.mkdir(parents=True, exist_ok=True)
    video = work / "clip.mp4"
    if not video.exists():
        write_video(video, frames=frames, size=(480, 640), seed=3)
    frame = render_scene(0, SceneSpec(size=(640, 480))).image
    paths, predictors = {}, {}
    for model, target, precision in CASES:
        path = work / f"{model}-{target}-{precision}"
        if not path.exists():
            export_bundle(model, target, precision, path, measure_reference=False, golden=0)
        paths[target] = path
        predictors[target] = Predictor(path)
        for _ in range(20):
            predictors[target].predict(frame)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "quit":
            break
        if cmd[0] == "e2e":
            p = predictors[cmd[1]]
            p.predict(frame)
            times = []
            for _ in range(E2E_RUNS):
                t0 = time.perf_counter()
                p.predict(frame)
                times.append((time.perf_counter() - t0) * 1000)
            value = statistics.median(times)
        else:
            value = pipeline_fps(paths[cmd[1]], video, work, cmd[2])
        print(value, flush=True)


def pipeline_fps(path: Path, video: Path, work: Path, encoder: str) -> float:
    """``encoder`` "mp4v": OpenCV's MPEG-4 Part 2 writer, which every commit writes (like for like);
    "installed": what the sink picks in this install."""
    import edgevision.pipeline.sinks as sinks
    from edgevision.pipeline import Pipeline, VideoFileSink, open_source
    from edgevision.predictor import Predictor

    saved = getattr(sinks, "ffmpeg_exe", None)
    if encoder == "mp4v" and saved is not None:
        sinks.ffmpeg_exe = lambda: None
    try:
        predictor = Predictor(path)
        summary = Pipeline(open_source(str(video)), predictor, [VideoFileSink(work / "out.mp4", 30)],
                           realtime=False).run(handle_signals=False)
        predictor.close()
    finally:
        if saved is not None:
            sinks.ffmpeg_exe = saved
    return summary["frames_processed"] / summary["duration_s"]


class Worker:
    def __init__(self, root: Path, work: Path, frames: int) -> None:
        self.proc = subprocess.Popen([str(root / ".venv/bin/python"), str(Path(__file__).resolve()), "--worker",
                                      str(work), "--frames", str(frames)], cwd=root, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self._line() != "ready":
            sys.exit(f"the worker in {root} did not start")

    def _line(self) -> str:
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> float:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path)
    ap.add_argument("--head", type=Path, default=Path("."))
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between turns")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-regression"))
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.frames)
        return
    sides = {"base": args.base.resolve(), "head": args.head.resolve()}
    commits = {k: subprocess.run(["git", "-C", str(v), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() for k, v in sides.items()}
    workers = {side: Worker(root, args.work / side, args.frames) for side, root in sides.items()}
    figures = {}
    for _, target, precision in CASES:
        figures[f"{target} {precision} end-to-end ms"] = f"e2e {target}"
        for encoder in ("mp4v", "installed"):
            figures[f"{target} {precision} pipeline fps, {encoder} video"] = f"pipeline {target} {encoder}"
    values: dict[str, dict[str, list[float]]] = {k: {"base": [], "head": []} for k in figures}
    for turn in range(args.turns):
        order = ["base", "head"] if turn % 2 == 0 else ["head", "base"]
        for name, command in figures.items():
            for side in order:
                time.sleep(args.pause)
                values[name][side].append(workers[side].ask(command))
        print(f"turn {turn + 1}: " + ", ".join(f"{k}: {v['base'][-1]:.2f} / {v['head'][-1]:.2f}"
                                               for k, v in values.items()), flush=True)
    for w in workers.values():
        w.close()
    from edgevision.hardware import cpu_info, cpu_line

    print(f"\nCPU: {cpu_line(cpu_info().to_json())}; base {commits['base']}, head {commits['head']}; "
          f"{args.turns} turns each, {E2E_RUNS} end-to-end runs or a {args.frames}-frame clip per turn\n")
    print("| figure | base (median) | head (median) | slowdown head/base: median of paired turns (IQR) | "
          "goal <= 1.05 |")
    print("|---|---|---|---|---|")
    for name, v in values.items():
        pairs = [h / b if name.endswith("ms") else b / h for b, h in zip(v["base"], v["head"])]
        q = statistics.quantiles(pairs, n=4)
        ratio = statistics.median(pairs)
        print(f"| {name} | {statistics.median(v['base']):.2f} | {statistics.median(v['head']):.2f} | "
              f"{ratio:.3f} ({q[0]:.2f}-{q[2]:.2f}) | {'met' if ratio <= 1.05 else 'NOT met'} |")


if __name__ == "__main__":
    main()
