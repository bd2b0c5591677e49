"""`edgevision run`: wire a bundle, a source and the requested sinks into a Pipeline."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edgevision.bundle import atomic_write_json, load_bundle
from edgevision.config import get_target
from edgevision.errors import BadInput
from edgevision.ops.prompts import Prompt, make_prompt
from edgevision.pipeline.core import Chain, Pipeline
from edgevision.pipeline.sinks import JsonlSink, MjpegServer, VideoFileSink, WindowSink
from edgevision.pipeline.sources import ImageFolderSource, open_source
from edgevision.predictor import Predictor


def check_output_file(path: Path, flag: str) -> None:
    """An output file path must name a file in an existing, writable folder (exit 2 before any work)."""
    if path.is_dir():
        raise BadInput(f"{flag} {path}: is a directory; give a file path, e.g. {path / ('out' + _suffix(flag))}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"{flag} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"{flag} {path}: the folder {parent} is not writable")


def _suffix(flag: str) -> str:
    return {"--out": ".mp4", "--jsonl": ".jsonl", "--stats": ".json"}.get(flag, "")


def run_pipeline(bundle, source: str, *, show: bool = False, out_video: Path | None = None, serve: int | None = None,
                 host: str = "127.0.0.1", jsonl: Path | None = None, stats: Path | None = None,
                 max_frames: int | None = None, realtime: bool | None = None, conf: float | None = None,
                 iou: float | None = None, max_reconnects: int = 5, runtime: str | None = None,
                 threads: int | None = None, processors=(), points: Sequence[str] = (), boxes: Sequence[str] = (),
                 prompts_from: Path | None = None, prompt_frame: int = 0, classes: Sequence[str] = (),
                 max_objects: int = 8, lost_after: int = 30) -> dict:
    if serve is not None and not 1 <= serve <= 65535:
        raise BadInput(f"--serve {serve}: not a TCP port; give one from 1 to 65535 (e.g. --serve 8080)")
    for flag, path in (("--out", out_video), ("--jsonl", jsonl), ("--stats", stats)):
        if path is not None:
            check_output_file(Path(path), flag)  # before the first frame, not after the whole video
    bundle = load_bundle(bundle)
    profile = get_target(bundle.meta.target)
    src = open_source(source)
    sinks = []
    try:
        if show:
            sinks.append(WindowSink())
        if serve is not None:
            sinks.append(MjpegServer(serve, host))
        if jsonl is not None:
            sinks.append(JsonlSink(jsonl))
        tracking = {"prompt_frame": prompt_frame, "classes": classes, "max_objects": max_objects,
                    "lost_after": lost_after}
        predictor = _stage(bundle, runtime, threads or profile.pipeline.inference, conf, iou, points, boxes,
                           prompts_from, tracking)
        if out_video is not None:
            src.open()  # learn the source's frame rate for the writer
            sinks.append(VideoFileSink(out_video, src.info.fps or 30.0))
            src.close()
        pipeline = Pipeline(src, predictor, sinks, realtime=realtime, max_frames=max_frames,
                            max_reconnects=max_reconnects, processors=processors,
                            postprocess_workers=profile.pipeline.postprocess or 1)
    except BaseException:
        for s in sinks:
            s.close()
        raise
    summary = pipeline.run()
    if isinstance(src, ImageFolderSource) and summary["frames_processed"] == 0:
        raise BadInput(f"no readable images in {source} ({summary['frames_corrupt']} files skipped); give a folder "
                       f"of JPEG/PNG images")
    summary["bundle"] = {"path": str(bundle.path), "model": bundle.meta.model, "target": bundle.meta.target,
                         "precision": bundle.meta.precision}
    runner = predictor.stages[-1].runner if isinstance(predictor, Chain) else predictor.runner
    summary["runtime"] = runner.describe()
    if stats is not None:
        atomic_write_json(Path(stats), summary)
    return summary


def _stage(bundle, runtime, threads, conf, iou, points: Sequence[str], boxes: Sequence[str], prompts_from,
           tracking: dict | None = None):
    """A Predictor for one-graph tasks; for a promptable bundle, a PromptStage with the prompts given, or
    chained behind a detector (--prompts-from); for a tracker, a TrackStage likewise."""
    tracking = tracking or {}
    kind = bundle.meta.head.get("kind")
    if kind != "tracker" and (tracking.get("prompt_frame") or tracking.get("classes")):
        raise BadInput(f"--prompt-frame and --classes apply to a tracker bundle; {bundle.path} is a "
                       f"{bundle.meta.task} bundle ({bundle.meta.model})")
    if kind == "tracker":
        return _track_stage(bundle, runtime, threads, conf, iou, points, boxes, prompts_from, tracking)
    promptable = kind == "prompt-masks"
    if not promptable:
        if points or boxes or prompts_from is not None:
            raise BadInput(f"--point, --box and --prompts-from prompt a promptable segmentation bundle; "
                           f"{bundle.path} is a {bundle.meta.task} bundle ({bundle.meta.model})")
        return Predictor(bundle, runtime=runtime, threads=threads, conf=conf, iou=iou)
    from edgevision.prompt_predictor import PromptPredictor, PromptStage

    if prompts_from is not None and (points or boxes):
        raise BadInput("give either --point/--box (the same prompts on every frame) or --prompts-from DETECTOR "
                       "(its boxes on each frame), not both")
    if prompts_from is None and not (points or boxes):
        raise BadInput(f"{bundle.path} is a promptable segmentation bundle: say what to segment with --point x,y "
                       f"or --box x0,y0,x1,y1, or --prompts-from DETECTOR_BUNDLE")
    if prompts_from is not None:
        detector = _detector(prompts_from, threads, conf, iou)
        return Chain(detector, PromptStage(PromptPredictor(bundle, runtime=runtime, threads=threads)))
    slots = int(bundle.meta.head["prompt_slots"])
    return PromptStage(PromptPredictor(bundle, runtime=runtime, threads=threads), cli_prompts(points, boxes, slots))


def _detector(path: Path, threads, conf, iou) -> Predictor:
    detector_bundle = load_bundle(path)
    if detector_bundle.meta.task != "detect":
        raise BadInput(f"--prompts-from {path}: a {detector_bundle.meta.task} bundle ({detector_bundle.meta.model}); "
                       f"give a detector bundle, whose boxes become box prompts")
    return Predictor(detector_bundle, threads=threads, conf=conf, iou=iou)


def _track_stage(bundle, runtime, threads, conf, iou, points: Sequence[str], boxes: Sequence[str], prompts_from,
                 tracking: dict):
    """A TrackStage: --box/--point start objects on --prompt-frame, or a detector's boxes start them
    (--prompts-from, --classes, --max-objects, --lost-after)."""
    from edgevision.tracker import Tracker, TrackPrompt, TrackStage

    if prompts_from is not None and (points or boxes):
        raise BadInput("give either --box/--point (objects to track from --prompt-frame) or --prompts-from DETECTOR "
                       "(its detections start tracks), not both")
    if prompts_from is None and not (points or boxes):
        raise BadInput(f"{bundle.path} is a tracker bundle: say what to track with --box x0,y0,x1,y1 or --point x,y "
                       f"(on the first frame, or --prompt-frame N), or --prompts-from DETECTOR_BUNDLE")
    if tracking.get("classes") and prompts_from is None:
        raise BadInput("--classes picks which detections start tracks; it needs --prompts-from DETECTOR_BUNDLE")
    options = {"max_objects": tracking.get("max_objects", 8), "lost_after": tracking.get("lost_after", 30)}
    if prompts_from is not None:
        detector = _detector(prompts_from, threads, conf, iou)
        names = list(detector.labels)
        classes = None
        if tracking.get("classes"):
            wanted = [c.strip() for text in tracking["classes"] for c in text.split(",") if c.strip()]
            unknown = [c for c in wanted if c not in names]
            if unknown:
                raise BadInput(f"--classes {','.join(unknown)}: not a label of {prompts_from} (its labels: "
                               f"{', '.join(names)})")
            classes = [names.index(c) for c in wanted]
        tracker = Tracker(bundle, runtime=runtime, threads=threads)
        return Chain(detector, TrackStage(tracker, classes=classes, labels=names, **options))
    tracker = Tracker(bundle, runtime=runtime, threads=threads)
    prompts = [TrackPrompt(p.box, tuple(p.points), tuple(p.labels))
               for p in cli_prompts(points, boxes, tracker.max_prompt_points)]
    return TrackStage(tracker, prompts, prompt_frame=tracking.get("prompt_frame", 0), **options)


def cli_prompts(points: Sequence[str], boxes: Sequence[str], slots: int) -> list[Prompt]:
    """``--point x,y[,label]`` and ``--box x0,y0,x1,y1`` -> prompts: all points form one prompt, together with
    the box when there is exactly one; with several boxes, each box is its own prompt (and the points another)."""
    pts, labels, bxs = [], [], []
    for text in points:
        values = _numbers(text, "--point", "x,y or x,y,label (label 1 foreground, 0 background)")
        if len(values) not in (2, 3) or (len(values) == 3 and values[2] not in (0, 1)):
            raise BadInput(f"--point {text}: expected x,y or x,y,label (label 1 foreground, 0 background)")
        pts.append(values[:2])
        labels.append(int(values[2]) if len(values) == 3 else 1)
    for text in boxes:
        values = _numbers(text, "--box", "x0,y0,x1,y1")
        if len(values) != 4:
            raise BadInput(f"--box {text}: expected x0,y0,x1,y1 (four numbers)")
        bxs.append(values)
    groups: list[tuple] = []
    if len(bxs) == 1:
        groups.append((pts, labels, bxs[0]))
    else:
        if pts:
            groups.append((pts, labels, None))
        groups += [((), None, b) for b in bxs]
    out = []
    for p, lab, b in groups:
        try:
            out.append(make_prompt(p, lab, b, slots=slots))
        except ValueError as e:
            msg = str(e)
            raise BadInput("--" + msg if msg.startswith("box ") else f"--point: {msg}") from None
    return out


def _numbers(text: str, flag: str, form: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInput(f"{flag} {text}: expected {form}") from None
