"""Real-time pipelines: ``Pipeline(open_source("0"), Predictor(bundle), [VideoFileSink(...)]).run()``."""

from edgevision.pipeline.core import Frame, FrameProcessor, Pipeline, SourceLost
from edgevision.pipeline.sinks import JsonlSink, MjpegServer, Sink, VideoFileSink, WindowSink
from edgevision.pipeline.sources import Source, open_source

__all__ = ["Frame", "FrameProcessor", "JsonlSink", "MjpegServer", "Pipeline", "Sink", "Source", "SourceLost",
           "VideoFileSink", "WindowSink", "open_source"]
