"""Peak memory of a jetson INT8 export (ONNX Runtime's percentile calibration) in one pass and in chunks.

    python benchmarks/bench_calibration_memory.py [--imgsz 1024] [--images 8 64] [--model efficient-sam-vitt]

ONNX Runtime's histogram calibrators keep every calibrated tensor of every image until they build their
histograms; edgevision feeds them in chunks once that would pass EDGEVISION_CALIBRATION_HOLD_MB (2048 by default).
Each export runs in a child process of its own, so its peak RSS (getrusage, max resident set) is that export's
alone: once with the limit set past any machine (one pass, as ONNX Runtime does by itself) and once with the
default. A one-pass run that would need more than the memory the machine has free is not started; its estimate
(images x the bundle's recorded MB an image) is printed instead. The calibration images are synthetic scenes,
the same for every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from edgevision.export import export_bundle
model, imgsz, calib, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
start = time.perf_counter()
bundle = export_bundle(model, "jetson", "int8", out, imgsz=imgsz, calib=calib, random_weights=True,
                       measure_reference=False, golden=0, force=True)
q = bundle.meta.graphs["image_encoder"].quantization
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "chunk": q.get("calibration_chunk"), "mb_per_image": q.get("calibration_mb_per_image"),
                  "images": q["calibration_images"]}))
"""


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def export_in_child(model: str, imgsz: int, calib: Path, hold_mb: str | None) -> dict:
    env = dict(os.environ)
    env.pop("EDGEVISION_CALIBRATION_HOLD_MB", None)
    if hold_mb:
        env["EDGEVISION_CALIBRATION_HOLD_MB"] = hold_mb
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", CHILD, model, str(imgsz), str(calib), str(Path(out) / "b")],
                              env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"export failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import cv2

    from edgevision.data.synthetic import SceneSpec, render_scene
    from edgevision.hardware import cpu_info, cpu_line

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficient-sam-vitt")
    ap.add_argument("--imgsz", type=int, default=1024)
    ap.add_argument("--images", type=int, nargs="+", default=[8, 64])
    args = ap.parse_args()

    print(f"CPU: {cpu_line(cpu_info().to_json())}; MemAvailable at start {available_mb() / 1024:.1f} GB")
    print(f"{args.model} at {args.imgsz} px, jetson INT8 (percentile ranges)\n")
    print("| images | calibration | chunk | MB an image held | peak RSS GB | export s |")
    print("|---|---|---|---|---|---|")
    mb_per_image = None
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.images:
            calib = Path(tmp) / f"scenes-{count}"
            calib.mkdir()
            for i in range(count):
                scene = render_scene(10_000 + i, SceneSpec(size=(256, 256), grid=16))
                cv2.imwrite(str(calib / f"{i:03d}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
            for label, hold in (("one pass", "1e12"), ("chunked (default limit)", None)):
                if hold and mb_per_image and count * mb_per_image > 0.9 * available_mb():
                    print(f"| {count} | {label} | - | {mb_per_image} | not run: about {count * mb_per_image / 1024:.0f} "
                          f"GB of held tensors, {available_mb() / 1024:.0f} GB free | - |", flush=True)
                    continue
                r = export_in_child(args.model, args.imgsz, calib, hold)
                mb_per_image = r["mb_per_image"]
                print(f"| {r['images']} | {label} | {r['chunk'] or '-'} | {r['mb_per_image']} | "
                      f"{r['peak_mb'] / 1024:.2f} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
