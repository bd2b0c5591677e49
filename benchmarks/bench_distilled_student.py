"""What `edgevision distill` buys on each target: a distilled student's image encoder against its teacher's,
side by side in one process, on whatever CPU runs it.

    python benchmarks/bench_distilled_student.py STUDENT.pt [--targets cpu intel-npu rpi jetson] [--runs 20]

STUDENT.pt is a student of the bundled efficient-sam-demo (RESULTS, session 32, has the command that makes the
5-block 320-px one). Per target, one interleaved timing of the image encoder of four bundles: teacher and student,
INT8 and FP32, each on the target's runtime; then click-to-mask (decoder, mask choice, upscale to a 1280x720
source, threshold) for the two INT8 bundles. GMAC per graph comes from the exported graphs. jetson bundles run on
ONNX Runtime here, only a host stand-in for TensorRT.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import cv2
import numpy as np

from edgevision.check.bench import interleaved, latency_stats
from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.export import export_bundle
from edgevision.hardware import cpu_info, cpu_line
from edgevision.prompt_predictor import PromptPredictor
from edgevision.runtime.base import open_runner

OUT = Path(__file__).resolve().parent / "out" / "distilled"
TEACHER = "efficient-sam-demo"
SOURCE = (720, 1280)


def bundles(student: Path, target: str) -> dict:
    made = {}
    for who, model, weights in (("teacher", TEACHER, None), ("student", "efficient-sam-student", student)):
        for precision in ("int8", "fp32"):
            made[f"{who} {precision}"] = export_bundle(
                model, target, precision, OUT / f"{who}-{target}-{precision}", weights=weights,
                measure_reference=False, golden=0, force=True)
    return made


def measure(student: Path, target: str, runs: int, threads: int) -> dict:
    made = bundles(student, target)
    runners = {k: open_runner(b, None, threads) for k, b in made.items()}
    image = render_scene(0, SceneSpec(size=SOURCE)).image
    enc = {}
    for k, b in made.items():
        net = np.ascontiguousarray(cv2.resize(image, (b.meta.imgsz, b.meta.imgsz))[None])
        enc[k] = lambda r=runners[k], net=net: r.run("image_encoder", {"image": net})
    predictors = {k: PromptPredictor(made[k], runner=runners[k]) for k in ("teacher int8", "student int8")}
    for p in predictors.values():
        p.set_image(image)
    click = {k: (lambda p=p: p.predict(points=[(640, 360)], multimask=False)) for k, p in predictors.items()}
    return {"runtime": runners["teacher int8"].runtime,
            "gmac": {k: b.meta.graphs["image_encoder"].macs / 1e9 for k, b in made.items()},
            "imgsz": {k: b.meta.imgsz for k, b in made.items()},
            "encoder": {k: latency_stats(v)["median_ms"] for k, v in interleaved(enc, runs, 3).items()},
            "click": {k: latency_stats(v)["median_ms"] for k, v in interleaved(click, runs, 3).items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("student", type=Path, help="a student checkpoint written by `edgevision distill`")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--targets", nargs="+", default=["cpu", "intel-npu", "rpi", "jetson"])
    args = ap.parse_args()
    if not args.student.is_file():
        raise SystemExit(f"{args.student}: no such student checkpoint; make one with `edgevision distill`")
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_line(cpu_info().to_json())}; Python {platform.python_version()}\n")
    print("| target (runtime) | encoder GMAC teacher / student | teacher INT8 / FP32 ms | student INT8 / FP32 ms | "
          "student speed-up, INT8 / FP32 | click-to-mask INT8 ms, teacher / student |")
    print("|---|---|---|---|---|---|")
    for target in args.targets:
        r = measure(args.student, target, args.runs, args.threads)
        e, c, g = r["encoder"], r["click"], r["gmac"]
        host = ", host stand-in" if target == "jetson" else ""
        print(f"| {target} ({r['runtime']}{host}) | {g['teacher int8']:.2f} @ {r['imgsz']['teacher int8']} / "
              f"{g['student int8']:.2f} @ {r['imgsz']['student int8']} | {e['teacher int8']:.1f} / "
              f"{e['teacher fp32']:.1f} | {e['student int8']:.1f} / {e['student fp32']:.1f} | "
              f"{e['teacher int8'] / e['student int8']:.2f}x / {e['teacher fp32'] / e['student fp32']:.2f}x | "
              f"{c['teacher int8']:.2f} / {c['student int8']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
