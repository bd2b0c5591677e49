"""ONNX Runtime worker threads on a bundle of several graphs: never spinning, spinning inside each run only
(``session.force_spinning_stop``, the runner's default for such bundles), or spinning throughout. Interleaved
in one process, on whatever CPU runs it.

    python benchmarks/bench_ort_spinning.py --tracker TRACKER_BUNDLE [--prompt PROMPT_BUNDLE] [--rounds 25]

- ``--tracker``: ``Tracker.track`` per frame with 1 and 2 objects (four graphs one after another);
- ``--prompt``: a promptable-segmentation bundle's ``mask_decoder`` alone, one prompt per run.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

from edgevision.bundle import load_bundle
from edgevision.check.bench import interleaved
from edgevision.hardware import cpu_info, cpu_line
from edgevision.runtime.onnxruntime import OnnxRuntimeRunner
from edgevision.tracker import Tracker, runner_graphs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_track_bundles import clip_frames  # noqa: E402

MODES = {"never": {"spinning": False}, "inside runs (default)": {"spin_after_run": False},
         "throughout": {"spin_after_run": True}}


def tracker_steps(bundle, objects: int, threads: int) -> dict:
    frames, boxes = clip_frames(bundle.meta.imgsz)
    steps = {}
    for mode, kw in MODES.items():
        tracker = Tracker(bundle)
        tracker.graphs = runner_graphs(OnnxRuntimeRunner(bundle, threads, **kw))
        for k in range(objects):
            tracker.add_prompt(frames[0], k + 1, box=boxes[k % len(boxes)])
        state = {"i": 0}

        def step(tracker=tracker, state=state):
            state["i"] += 1
            tracker.track(frames[state["i"] % len(frames)])
        steps[mode] = step
    return steps


def decoder_steps(bundle, threads: int) -> dict:
    spec = bundle.meta.graph("mask_decoder")
    rng = np.random.default_rng(0)
    feeds = {t.name: (rng.standard_normal(t.shape) if t.name != "point_labels" else
                      np.array([[1] + [-1] * (t.shape[1] - 1)])).astype(np.float32) for t in spec.inputs}
    steps = {}
    for mode, kw in MODES.items():
        runner = OnnxRuntimeRunner(bundle, threads, **kw)
        steps[mode] = lambda runner=runner: runner.run("mask_decoder", feeds)
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracker", type=Path)
    ap.add_argument("--prompt", type=Path)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (args.tracker or args.prompt):
        ap.error("give --tracker and/or --prompt")
    import onnxruntime as ort

    print(f"CPU: {cpu_line(cpu_info().to_json())}; Python {platform.python_version()}; onnxruntime {ort.__version__}; "
          f"{args.threads} threads\n")
    print("| what | " + " | ".join(f"spinning {m}: median (p10) ms" for m in MODES) + " |")
    print("|---|" + "---|" * len(MODES))
    cases = []
    if args.prompt:
        cases.append((f"{load_bundle(args.prompt).meta.model} mask_decoder, one prompt",
                      decoder_steps(load_bundle(args.prompt), args.threads)))
    if args.tracker:
        b = load_bundle(args.tracker)
        cases += [(f"{b.meta.model} {b.meta.target} {b.meta.precision} tracker step, {n} object{'s' * (n > 1)}",
                   tracker_steps(b, n, args.threads)) for n in (1, 2)]
    for what, steps in cases:
        ms = {k: np.asarray(v) * 1000 for k, v in interleaved(steps, 2 * args.rounds, warmup=1, block=2).items()}
        print(f"| {what} | " + " | ".join(f"{np.median(v):.1f} ({np.percentile(v, 10):.1f})" for v in ms.values())
              + " |", flush=True)


if __name__ == "__main__":
    main()
