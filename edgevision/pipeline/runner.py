"""`edgevision run`: wire a bundle, a source and the requested sinks into a Pipeline."""

from __future__ import annotations

import os
from pathlib import Path

from edgevision.bundle import atomic_write_json, load_bundle
from edgevision.config import get_target
from edgevision.errors import BadInput
from edgevision.pipeline.core import Pipeline
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
                 threads: int | None = None, processors=()) -> dict:
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
        predictor = Predictor(bundle, runtime=runtime, threads=threads or profile.pipeline.inference, conf=conf,
                              iou=iou)
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
    summary["runtime"] = predictor.runner.describe()
    if stats is not None:
        atomic_write_json(Path(stats), summary)
    return summary
