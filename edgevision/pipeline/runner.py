"""`edgevision run`: wire a bundle, a source and the requested sinks into a Pipeline."""

from __future__ import annotations

from pathlib import Path

from edgevision.bundle import atomic_write_json, load_bundle
from edgevision.config import get_target
from edgevision.pipeline.core import Pipeline
from edgevision.pipeline.sinks import JsonlSink, MjpegServer, VideoFileSink, WindowSink
from edgevision.pipeline.sources import open_source
from edgevision.predictor import Predictor


def run_pipeline(bundle, source: str, *, show: bool = False, out_video: Path | None = None, serve: int | None = None,
                 host: str = "127.0.0.1", jsonl: Path | None = None, stats: Path | None = None,
                 max_frames: int | None = None, realtime: bool | None = None, conf: float | None = None,
                 iou: float | None = None, max_reconnects: int = 5, runtime: str | None = None,
                 threads: int | None = None, processors=()) -> dict:
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
    summary["bundle"] = {"path": str(bundle.path), "model": bundle.meta.model, "target": bundle.meta.target,
                         "precision": bundle.meta.precision}
    summary["runtime"] = predictor.runner.describe()
    if stats is not None:
        atomic_write_json(Path(stats), summary)
    return summary
