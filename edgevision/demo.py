"""`edgevision demo`: export -> check -> run on built-in data, end to end, in a few minutes on 2 cores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edgevision.bundle import atomic_write_json
from edgevision.check.bench import bench_bundle
from edgevision.check.compare import check_bundle
from edgevision.config import bundle_recipe
from edgevision.data.datasets import list_images
from edgevision.data.video import write_truth, write_video
from edgevision.export import export_bundle
from edgevision.ops.preprocess import read_image
from edgevision.ops.results import Detections
from edgevision.predictor import Predictor
from edgevision.resources import resource_dir

DEMO_MODELS = ("fast-yolo-demo", "mobile-unet", "deit-tiny-demo", "efficient-sam-demo", "sam-track-demo")


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
        metric = bundle_recipe(bundle.meta).primary_metric
        m = report["metrics"]
        failed = {f["metric"] for f in report["failures"]}
        gated = [{"metric": k, "reference": m["reference"].get(k), "artifact": m["artifact"].get(k),
                  "delta": m.get("delta", {}).get(k), "max_drop": tol["max_drop"], "passed": k not in failed}
                 for k, tol in report["tolerances"].items() if "max_drop" in tol]
        gated += [{"metric": k, "artifact": report["agreement"].get(k), "min": tol["min"], "passed": k not in failed}
                  for k, tol in report["tolerances"].items() if "min" in tol]
        rows.append({
            "model": model, "target": bundle.meta.target, "precision": "int8", "metric": metric,
            "reference": m["reference"][metric], "artifact": m["artifact"][metric], "delta": m["delta"][metric],
            "reference_ms": speed["latency"]["pytorch_fp32"]["median_ms"],
            "artifact_ms": speed["latency"]["artifact"]["median_ms"],
            "end_to_end_ms": speed["latency"]["end_to_end"]["median_ms"],
            "speedup": speed["ratios"]["speedup_vs_pytorch"], "passed": report["passed"],
            "agreement": report["agreement"], "gated": gated,
        })
        written[f"{model} bundle"] = str(bundle.path)
        written[f"{model} check report"] = str(bundle.path / "report.json")

    say(f"generating a {frames}-frame video of moving shapes")
    video_in = out_dir / "input" / "moving-shapes.mp4"
    truth = write_video(video_in, frames=frames)
    write_truth(video_in.with_suffix(".json"), truth)
    written["generated video"] = str(video_in)

    say("running detection, segmentation and promptable segmentation (prompted by the detector) on the video")
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
    """The models through the real camera pipeline (every frame): the detector, the U-Net, the promptable
    segmenter with the detector's boxes as its prompts, and the tracker with its objects started by the
    detector's boxes (both ``run --prompts-from``); plus the detector's mAP against the exact boxes of the
    generated video (at the drawn score threshold), where the prompted masks landed and what the tracker
    followed."""
    from edgevision.check.metrics import detection_map
    from edgevision.pipeline import Pipeline, VideoFileSink, open_source
    from edgevision.pipeline.core import Chain
    from edgevision.prompt_predictor import PromptPredictor, PromptStage
    from edgevision.tracker import Tracker, TrackStage

    written, stats = {}, {}
    detections: list[Detections] = []
    mask_boxes: list[list] = []
    tracked: list[list] = []  # per frame, (id, box) of each present track
    for model, kind in (("fast-yolo-demo", "detections"), ("mobile-unet", "segmentation"),
                        ("efficient-sam-demo", "prompted-masks"), ("sam-track-demo", "tracks")):
        out = out_dir / f"{kind}.mp4"
        source = open_source(str(video_in))
        if kind == "prompted-masks":
            stage = Chain(Predictor(bundles["fast-yolo-demo"]), PromptStage(PromptPredictor(bundles[model])))
        elif kind == "tracks":
            detector = Predictor(bundles["fast-yolo-demo"])
            stage = Chain(detector, TrackStage(Tracker(bundles[model]), labels=list(detector.labels)))
        else:
            stage = Predictor(bundles[model])
        collect = {"detections": lambda f: detections.append(f.result),
                   "prompted-masks": lambda f: mask_boxes.append(f.result.boxes()),
                   "tracks": lambda f: tracked.append([(o.obj_id, o.box()) for o in f.result.objects
                                                       if o.present])}.get(kind)
        summary = Pipeline(source, stage, [VideoFileSink(out, 15.0)], realtime=False,
                           on_frame=collect).run(handle_signals=False)
        stats[kind] = {"frames": summary["frames_processed"], "fps": summary["fps"],
                       "capture_to_output_p50_ms": summary["latency_ms"]["end_to_end"].get("p50_ms")}
        written[f"annotated video ({kind})"] = str(out)
    n = len(detections)
    scores = detection_map(truth.boxes[:n], truth.labels[:n], detections, len(bundles["fast-yolo-demo"].meta.labels))
    tracks = {"started": len({obj_id for frame in tracked for obj_id, _ in frame}),
              **mask_stats([[box for _, box in frame] for frame in tracked], truth)}
    return {"frames": n, "detection_vs_truth": scores, "prompted_masks": mask_stats(mask_boxes, truth),
            "tracks": tracks, "pipeline": stats, "written": written}


def mask_stats(mask_boxes: list[list], truth, iou: float = 0.5) -> dict:
    """Masks per frame and the share of them whose extent matches a true object's box (IoU >= ``iou``):
    ``mask_boxes`` holds, per frame, each mask's box (None for an empty mask)."""
    from edgevision.tracker import box_iou

    on_object = [any(box_iou(box, t) >= iou for t in truth.boxes[i]) if box is not None else False
                 for i, frame in enumerate(mask_boxes) for box in frame]
    return {"masks_per_frame": round(float(np.mean([len(f) for f in mask_boxes])), 2) if mask_boxes else 0.0,
            "objects_in_truth_per_frame": round(float(np.mean([len(b) for b in truth.boxes[:len(mask_boxes)]])), 2),
            "on_object": round(100 * float(np.mean(on_object)), 1) if on_object else 0.0}


REFERENCE_BGR = (60, 200, 60)  # FP32 PyTorch: green
ARTIFACT_BGR = (255, 60, 255)  # the INT8 artifact: magenta


def annotate_images(paths: list[Path], out_dir: Path, bundle) -> list[dict]:
    """What edgevision is for, on real photos: the INT8 artifact's detections (magenta) over the FP32
    reference's (green), and how many of the reference's it kept. (The demo detector knows only synthetic shapes,
    so what it finds on photos is beside the point; that INT8 finds the same is the point.)"""
    from edgevision.check.reference import reference_runner
    from edgevision.pipeline.render import draw_detections, draw_legend

    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with Predictor(bundle) as artifact, Predictor(bundle, runner=reference_runner(bundle)) as reference:
        for path in paths:
            rgb = read_image(path)
            ref, art = reference.predict(rgb), artifact.predict(rgb)
            # small photos are drawn at 2x or more, so that labels stay legible
            zoom = max(1, int(np.ceil(800 / max(rgb.shape[:2]))))
            img = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), None, fx=zoom, fy=zoom,
                             interpolation=cv2.INTER_LINEAR)
            scaled = lambda d: Detections(d.boxes * zoom, d.scores, d.class_ids)  # noqa: E731
            # the reference as wide green frames, the artifact as labelled magenta boxes inside them
            draw_detections(img, scaled(ref), reference.labels, colour=REFERENCE_BGR, text=False)
            draw_detections(img, scaled(art), artifact.labels, colour=ARTIFACT_BGR)
            draw_legend(img, [("FP32 reference", np.array(REFERENCE_BGR)), ("INT8 artifact", np.array(ARTIFACT_BGR))])
            target = out_dir / f"{path.stem}.jpg"
            cv2.imwrite(str(target), img)
            results.append({"image": path.name, "detections": art.to_json(artifact.labels),
                            "reference_detections": ref.to_json(reference.labels), "kept": matched(ref, art),
                            "written": str(target)})
    return results


def matched(reference: Detections, artifact: Detections, iou: float = 0.5) -> int:
    """How many reference detections the artifact reproduces: same class, IoU >= ``iou``, one to one."""
    used = np.zeros(len(artifact), bool)
    count = 0
    for box, cls in zip(reference.boxes, reference.class_ids):
        x0 = np.maximum(box[0], artifact.boxes[:, 0])
        y0 = np.maximum(box[1], artifact.boxes[:, 1])
        x1 = np.minimum(box[2], artifact.boxes[:, 2])
        y1 = np.minimum(box[3], artifact.boxes[:, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        ious = inter / np.maximum(area(box) + area(artifact.boxes) - inter, 1e-9)
        ok = (~used) & (artifact.class_ids == cls) & (ious >= iou)
        if ok.any():
            used[int(np.argmax(np.where(ok, ious, -1)))] = True
            count += 1
    return count

