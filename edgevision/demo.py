"""`edgevision demo`: export -> check -> run on built-in data, end to end, in a few minutes on 2 cores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2

from edgevision.bundle import atomic_write_json
from edgevision.check.bench import bench_bundle
from edgevision.check.compare import check_bundle
from edgevision.config import load_recipe
from edgevision.data.datasets import list_images
from edgevision.data.video import write_truth, write_video
from edgevision.export import export_bundle
from edgevision.ops.preprocess import read_image
from edgevision.ops.results import Detections
from edgevision.pipeline.render import draw_panel, draw_result
from edgevision.predictor import Predictor
from edgevision.resources import resource_dir

DEMO_MODELS = ("fast-yolo-demo", "mobile-unet")


def run_demo(out_dir: Path, *, target: str = "cpu", frames: int = 90, runs: int = 30,
             say: Callable[[str], None] = print) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, bundles, written = [], {}, {}
    for model in DEMO_MODELS:
        say(f"[{model}] exporting to {target} int8")
        bundle = export_bundle(model, target, "int8", out_dir / "bundles" / f"{model}-{target}-int8", force=True,
                               progress=lambda m, model=model: say(f"[{model}] {m}"))
        bundles[model] = bundle
        say(f"[{model}] checking against FP32 PyTorch on the synthetic eval set")
        report = check_bundle(bundle)
        say(f"[{model}] measuring latency ({runs} interleaved runs)")
        speed = bench_bundle(bundle, runs=runs, warmup=5)
        metric = load_recipe(model, bundle.meta.task).primary_metric
        m = report["metrics"]
        rows.append({
            "model": model, "target": bundle.meta.target, "precision": "int8", "metric": metric,
            "reference": m["reference"][metric], "artifact": m["artifact"][metric], "delta": m["delta"][metric],
            "reference_ms": speed["latency"]["pytorch_fp32"]["median_ms"],
            "artifact_ms": speed["latency"]["artifact"]["median_ms"],
            "end_to_end_ms": speed["latency"]["end_to_end"]["median_ms"],
            "speedup": speed["ratios"]["speedup_vs_pytorch"], "passed": report["passed"],
            "agreement": report["agreement"],
        })
        written[f"{model} bundle"] = str(bundle.path)
        written[f"{model} check report"] = str(bundle.path / "report.json")

    say(f"generating a {frames}-frame video of moving shapes")
    video_in = out_dir / "input" / "moving-shapes.mp4"
    truth = write_video(video_in, frames=frames)
    write_truth(video_in.with_suffix(".json"), truth)
    written["generated video"] = str(video_in)

    say("running detection and segmentation on the video")
    video_stats = annotate_video(video_in, out_dir, bundles, truth)
    written.update(video_stats.pop("written"))

    say("running detection on the bundled real photos")
    photos = annotate_images(list_images(resource_dir("calibration") / "images"), out_dir / "photos",
                             bundles["fast-yolo-demo"])
    written["annotated photos"] = str(out_dir / "photos")
    summary = {"schema_version": 1, "kind": "demo", "rows": rows, "video": video_stats, "photos": photos,
               "written": written}
    atomic_write_json(out_dir / "summary.json", summary)
    written["summary"] = str(out_dir / "summary.json")
    return summary


def annotate_video(video_in: Path, out_dir: Path, bundles: dict, truth) -> dict:
    """Detection and segmentation overlays of every frame, plus the detector's mAP against the exact boxes."""
    from edgevision.check.metrics import detection_map

    cap = cv2.VideoCapture(str(video_in))
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    outputs = {"detections": out_dir / "detections.mp4", "segmentation": out_dir / "segmentation.mp4"}
    writers = {k: cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)) for k, p in outputs.items()}
    det = Predictor(bundles["fast-yolo-demo"])
    seg = Predictor(bundles["mobile-unet"])
    # mAP needs the full score range; the overlay draws only confident boxes.
    det_all = Predictor(bundles["fast-yolo-demo"], runner=det.runner, conf=0.001)
    predictions: list[Detections] = []
    try:
        while True:
            ok, frame_bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            dets = det.predict(rgb)
            predictions.append(det_all.predict(rgb))
            writers["detections"].write(draw_panel(draw_result(frame_bgr.copy(), dets, det.labels),
                                                   [f"{len(dets)} objects"]))
            writers["segmentation"].write(draw_result(frame_bgr, seg.predict(rgb), seg.labels))
    finally:
        cap.release()
        for wr in writers.values():
            wr.release()
    n = len(predictions)
    scores = detection_map(truth.boxes[:n], truth.labels[:n], predictions, len(det.labels))
    return {"frames": n, "detection_vs_truth": scores,
            "written": {f"annotated video ({k})": str(p) for k, p in outputs.items()}}


def annotate_images(paths: list[Path], out_dir: Path, bundle) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with Predictor(bundle) as p:
        for path in paths:
            rgb = read_image(path)
            dets = p.predict(rgb)
            img = draw_result(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), dets, p.labels)
            target = out_dir / f"{path.stem}.jpg"
            cv2.imwrite(str(target), img)
            results.append({"image": path.name, "detections": dets.to_json(p.labels), "written": str(target)})
    return results

