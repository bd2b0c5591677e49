"""The camera pipeline: capture -> preprocess+infer -> postprocess (decode + NMS on the CPU) -> render/sinks.

Each stage is a thread joined to the next by a bounded queue, so inference of frame t overlaps with NMS and
rendering of frame t-1 and with the capture of frame t+1 (the runtimes, OpenCV and NumPy release the GIL).
In realtime mode the capture stage drops the *oldest* queued frame when inference falls behind, and counts
it; in every-frame mode it waits instead. Frames reach the sinks in order.

A model whose state from frame t shapes frame t+1 (a tracker with a memory bank, a detector chained into a
segmenter or tracker on the same frame) is a *stateful stage*: an object with ``stateful = True`` and
``step(frame_rgb) -> result`` (see ``StatefulStage``). The infer thread runs it whole (preprocess, inference,
postprocess, state update) for one frame after another, in order; capture and rendering stay overlapped with it,
and ``--realtime`` drops frames in the capture stage, before it, never inside it. ``processors`` remain the seam
for stateless post-steps, run in the render stage in frame order.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.pipeline.render import draw_panel, draw_result
from edgevision.pipeline.sinks import Sink
from edgevision.pipeline.sources import CORRUPT, Reconnector, Source
from edgevision.pipeline.stats import LatencyHistogram
from edgevision.tasks import task_for_result

log = logging.getLogger("edgevision")
STATS_SCHEMA_VERSION = 1
STAGES = ("capture", "preprocess", "infer", "postprocess", "render")
_END = object()  # end-of-stream marker passed down the queues


class SourceLost(EdgevisionError):
    """A live source did not come back within --max-reconnects. Exit 3."""


@dataclass
class Frame:
    index: int  # position in the source, counting dropped frames
    image: np.ndarray  # BGR
    t_capture: float  # perf_counter() when the frame was read (monotonic)
    times: dict[str, float] = field(default_factory=dict)  # ms per stage
    seq: int = -1  # position among processed frames
    batch: np.ndarray | None = None
    geometry: Any = None
    outputs: list[np.ndarray] | None = None
    result: Any = None


class FrameProcessor(Protocol):
    """A stateful per-frame step; sees every processed frame once, in order."""

    def __call__(self, frame: Frame, result: Any) -> Any: ...


class StatefulStage(Protocol):
    """A model with state across frames. ``step`` sees every frame that reaches it exactly once, in order."""

    stateful: bool  # True
    labels: Sequence[str]

    def step(self, frame_rgb: np.ndarray) -> Any: ...


class Chain:
    """Stages run one after another on the same frame, each given the previous one's result: a detector whose
    boxes become the prompts of a segmenter or tracker (``run --prompts-from``). Stateful as a whole, so the
    infer thread runs it in frame order.

    Each stage after the first is called as ``stage.step(frame_rgb, upstream_result)``; the first may be a
    plain Predictor (its ``predict``) or a stateful stage."""

    stateful = True

    def __init__(self, first, *rest) -> None:
        if not rest:
            raise ValueError("a chain needs at least two stages")
        self.stages = (first, *rest)
        self.labels = getattr(rest[-1], "labels", getattr(first, "labels", ()))

    def step(self, frame_rgb: np.ndarray):
        first = self.stages[0]
        result = first.step(frame_rgb) if getattr(first, "stateful", False) else first.predict(frame_rgb)
        for stage in self.stages[1:]:
            result = stage.step(frame_rgb, result)
        return result


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read = self.processed = self.dropped = self.corrupt = 0


class Pipeline:
    """Run a bundle over a source. ``predictor`` supplies preprocess / runner / postprocess."""

    def __init__(self, source: Source, predictor, sinks: Sequence[Sink] = (), *, realtime: bool | None = None,
                 max_frames: int | None = None, max_reconnects: int = 5, processors: Sequence[FrameProcessor] = (),
                 postprocess_workers: int = 1, queue_size: int = 2, draw: bool = True,
                 on_frame: Callable[[Frame], None] | None = None) -> None:
        self.source = source
        self.predictor = predictor  # a Predictor, or a StatefulStage (stateful = True)
        self.stateful = bool(getattr(predictor, "stateful", False))
        self.sinks = list(sinks)
        self.realtime = source.info.live if realtime is None else realtime
        self.max_frames = max_frames
        self.processors = list(processors)
        self.postprocess_workers = max(1, postprocess_workers)
        self.draw = draw
        self.on_frame = on_frame
        self.reconnector = Reconnector(source, max_reconnects)
        self.q_infer: queue.Queue = queue.Queue(maxsize=queue_size)
        self.q_post: queue.Queue = queue.Queue(maxsize=queue_size)
        self.q_render: queue.Queue = queue.Queue(maxsize=queue_size + self.postprocess_workers)
        self.stop = threading.Event()
        self.interrupted = False  # stopped by Ctrl-C (SIGINT), as opposed to the end of the input or SIGTERM
        self.counters = _Counters()
        self.hist = {s: LatencyHistogram() for s in (*STAGES, "end_to_end")}
        self._errors: list[BaseException] = []
        self._t_start = self._t_last = None

    # ---------------------------------------------------------------------------------------------- stages
    def _put(self, q: queue.Queue, item) -> bool:
        """Blocking put that gives up when the pipeline is stopping with an error."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._errors:
                    return False

    def _get(self, q: queue.Queue):
        """Blocking get that gives up once the pipeline is stopping with an error: the stage before may have
        failed without room to queue its end marker (a lost camera while inference is the slow stage)."""
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self._errors:
                    return _END

    def _capture(self) -> None:
        c = self.counters
        index = 0
        try:
            while not self.stop.is_set():
                if self.max_frames is not None and c.read >= self.max_frames:
                    break
                t0 = time.perf_counter()
                frame = self.source.read()
                t1 = time.perf_counter()
                if frame is None:
                    if not self.source.info.live:
                        break  # end of the file / folder
                    if not self.reconnector.reconnect(self.stop):
                        if not self.stop.is_set():
                            raise SourceLost(f"source {self.source.info.description} lost after "
                                             f"{self.reconnector.reconnects} reconnects (--max-reconnects)")
                        break
                    continue
                if frame is CORRUPT:
                    with c.lock:
                        c.corrupt += 1
                    continue
                self.reconnector.recovered()
                with c.lock:
                    c.read += 1
                item = Frame(index, frame, t1, {"capture": (t1 - t0) * 1000})
                index += 1
                if self._t_start is None:
                    self._t_start = t0
                if self.realtime:
                    while True:
                        try:
                            self.q_infer.put_nowait(item)
                            break
                        except queue.Full:
                            try:
                                self.q_infer.get_nowait()  # drop the oldest, keep the newest
                                with c.lock:
                                    c.dropped += 1
                            except queue.Empty:
                                pass
                elif not self._put(self.q_infer, item):
                    break
        except BaseException as e:
            self._fail(e)
        finally:
            self._put(self.q_infer, _END)

    def _infer(self) -> None:
        seq = 0
        try:
            while True:
                item = self._get(self.q_infer)
                if item is _END:
                    break
                t0 = time.perf_counter()
                rgb = cv2.cvtColor(item.image, cv2.COLOR_BGR2RGB)
                if self.stateful:  # the whole model, state update included, in frame order
                    item.result = self.predictor.step(rgb)
                    item.times["infer"] = (time.perf_counter() - t0) * 1000
                else:
                    item.batch, item.geometry = self.predictor.preprocess(rgb)
                    t1 = time.perf_counter()
                    item.outputs = self.predictor.infer(item.batch)
                    t2 = time.perf_counter()
                    item.times["preprocess"] = (t1 - t0) * 1000
                    item.times["infer"] = (t2 - t1) * 1000
                item.seq = seq
                seq += 1
                if not self._put(self.q_post, item):
                    break
        except BaseException as e:
            self._fail(e)
        finally:
            for _ in range(self.postprocess_workers):
                self._put(self.q_post, _END)

    def _postprocess(self) -> None:
        try:
            while True:
                item = self._get(self.q_post)
                if item is _END:
                    break
                if not self.stateful:  # a stateful stage has postprocessed already
                    t0 = time.perf_counter()
                    item.result = self.predictor.postprocess({k: v[0] for k, v in item.outputs.items()}, item.geometry)
                    item.outputs = item.batch = None
                    item.times["postprocess"] = (time.perf_counter() - t0) * 1000
                if not self._put(self.q_render, item):
                    break
        except BaseException as e:
            self._fail(e)
        finally:
            self._put(self.q_render, _END)

    def _render(self) -> None:
        pending: dict[int, Frame] = {}
        next_seq, ended = 0, 0
        try:
            while ended < self.postprocess_workers:
                item = self._get(self.q_render)
                if item is _END:
                    if self._errors:
                        return
                    ended += 1
                    continue
                pending[item.seq] = item
                while next_seq in pending:  # restore frame order across postprocess workers
                    self._emit(pending.pop(next_seq))
                    next_seq += 1
            for seq in sorted(pending):
                self._emit(pending.pop(seq))
        except BaseException as e:
            self._fail(e)

    def _emit(self, item: Frame) -> None:
        t0 = time.perf_counter()
        result = item.result
        for proc in self.processors:
            result = proc(item, result)
        item.result = result
        image = item.image
        if self.draw and self.sinks_need_pixels:
            draw_result(image, result, self.predictor.labels)
            draw_panel(image, self._panel_lines())
        record = self._record(item)
        for sink in self.sinks:
            sink.write(image, record)
        t1 = time.perf_counter()
        item.times["render"] = (t1 - t0) * 1000
        with self.counters.lock:
            self.counters.processed += 1
        for stage, ms in item.times.items():
            self.hist[stage].add(ms)
        self.hist["end_to_end"].add((t1 - item.t_capture) * 1000)
        self._t_last = t1
        if self.on_frame:
            self.on_frame(item)
        item.image = None

    @property
    def sinks_need_pixels(self) -> bool:
        from edgevision.pipeline.sinks import JsonlSink

        return any(not isinstance(s, JsonlSink) for s in self.sinks)

    def _panel_lines(self) -> list[str]:
        # The same figure the run prints at the end: frames processed over the time since the first capture (an
        # average of instantaneous rates read 2x too high, since parallel postprocessing emits frames in bursts).
        elapsed = (self._t_last - self._t_start) if (self._t_last and self._t_start) else 0.0
        fps = f"{self.counters.processed / elapsed:.1f}" if elapsed > 0 else "-"
        infer = f"{self.hist['infer'].quantile(0.5):.1f} ms" if self.hist["infer"].n else "-"  # none on frame 0
        e2e = f"{self.hist['end_to_end'].quantile(0.5):.1f} ms" if self.hist["end_to_end"].n else "-"
        return [f"end-to-end FPS {fps}", f"infer p50 {infer}", f"capture->out p50 {e2e}"]

    def _record(self, item: Frame) -> dict:
        rec: dict[str, Any] = {"frame": item.index, "t": round(item.t_capture - (self._t_start or item.t_capture), 6)}
        if item.result is not None:
            task = task_for_result(item.result)
            rec[task.json_key] = task.to_json(item.result, self.predictor.labels)
        rec["latency_ms"] = {k: round(v, 3) for k, v in item.times.items()}
        return rec

    def _fail(self, e: BaseException) -> None:
        if not self._errors:
            self._errors.append(e)
        self.stop.set()

    # --------------------------------------------------------------------------------------------------- run
    def run(self, handle_signals: bool = True) -> dict:
        """Run to the end of the input, --max-frames, or a stop (Ctrl-C / SIGTERM); returns the summary."""
        self.source.open()
        threads = [threading.Thread(target=self._capture, name="capture", daemon=True),
                   threading.Thread(target=self._infer, name="infer", daemon=True),
                   *[threading.Thread(target=self._postprocess, name=f"postprocess-{i}", daemon=True)
                     for i in range(self.postprocess_workers)],
                   threading.Thread(target=self._render, name="render", daemon=True)]
        restore = self._install_signal_handlers() if handle_signals else {}
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.2)
                    if any(getattr(s, "closed_by_user", threading.Event()).is_set() for s in self.sinks):
                        self.stop.set()
        except KeyboardInterrupt:
            self.interrupted = True
            self.stop.set()
            for t in threads:
                t.join(timeout=10)
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            self.source.close()
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as e:  # every sink gets closed; the first failure fails the run after
                    log.warning("closing %s failed: %s", type(sink).__name__, e)
                    self._fail(e if isinstance(e, EdgevisionError) else
                               EdgevisionError(f"{type(sink).__name__} could not finish its output: {e}"))
        if self._errors:
            raise self._errors[0]
        return self.summary()

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def stop(signum, _frame) -> None:
            if signum == signal.SIGINT:
                self.interrupted = True  # Ctrl-C: the run still finishes its outputs, then exits 130
            self.stop.set()

        for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, stop)
        return previous

    def summary(self) -> dict:
        c = self.counters
        duration = (self._t_last - self._t_start) if (self._t_start and self._t_last) else 0.0
        return {
            "schema_version": STATS_SCHEMA_VERSION, "kind": "run",
            "source": self.source.info.description, "realtime": self.realtime,
            "frames_read": c.read, "frames_processed": c.processed, "frames_dropped": c.dropped,
            "frames_corrupt": c.corrupt, "reconnects": self.reconnector.reconnects,
            "duration_s": round(duration, 3), "interrupted": self.interrupted,
            "fps": round(c.processed / duration, 2) if duration > 0 else None,
            "latency_ms": {k: h.summary() for k, h in self.hist.items()},
        }
