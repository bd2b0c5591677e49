"""Where annotated frames and per-frame results go: a video file, JSONL, an MJPEG server, a window."""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from edgevision.errors import BadInput, EdgevisionError

log = logging.getLogger("edgevision")


class Sink(ABC):
    """Receives frames in order, from the render stage only (no locking needed inside a sink)."""

    @abstractmethod
    def write(self, frame_bgr: np.ndarray, record: dict) -> None: ...

    def close(self) -> None:  # noqa: B027
        pass


class VideoFileSink(Sink):
    """MP4 (mp4v) written to a temp name and renamed on close, so an interrupted run still leaves a playable
    file and never a half-written one under the final name."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            raise BadInput(f"--out {self.path}: the folder {self.path.parent} does not exist")
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.fps = fps
        self.writer = None
        self.frames = 0

    def write(self, frame_bgr, record) -> None:
        if self.writer is None:
            h, w = frame_bgr.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise BadInput(f"--out {self.path}: OpenCV cannot write this video here")
            self.size = (w, h)
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self.size:
            frame_bgr = cv2.resize(frame_bgr, self.size)
        self.writer.write(frame_bgr)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            try:
                os.replace(self.tmp, self.path)
            except OSError as e:
                self.tmp.unlink(missing_ok=True)  # no hidden partial video left behind
                raise EdgevisionError(f"--out {self.path}: cannot save the video ({e.strerror})") from None


class JsonlSink(Sink):
    """One JSON object per frame, written under a temp name from the first frame on (flushed every
    ``flush_every`` frames) and renamed on close: a run that fails before its first frame leaves no file, and one
    interrupted later keeps the frames it processed."""

    def __init__(self, path: Path, flush_every: int = 10) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.f = None
        self.flush_every = flush_every
        self.n = 0

    def write(self, frame_bgr, record) -> None:
        if self.f is None:
            try:
                self.f = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as e:
                raise BadInput(f"--jsonl {self.path}: cannot write ({e.strerror})") from None
        self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.n += 1
        if self.n % self.flush_every == 0:
            self.f.flush()

    def close(self) -> None:
        if self.f is not None and not self.f.closed:
            self.f.close()
            os.replace(self.tmp, self.path)


class MjpegServer(Sink):
    """Serves the latest annotated frame as multipart MJPEG at http://HOST:PORT/ (default host 127.0.0.1).

    JPEG encoding happens once per frame in the render stage; each client thread only sends bytes.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80) -> None:
        self.quality = quality
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._closed = False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path not in ("/", "/stream", "/stream.mjpg"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                seen = -1
                try:
                    while True:
                        with sink._cond:
                            sink._cond.wait_for(lambda: sink._seq != seen or sink._closed, timeout=1.0)
                            if sink._closed:
                                return
                            jpeg, seen = sink._jpeg, sink._seq
                        if jpeg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args):  # keep the console for the summary
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise BadInput(f"--serve {port}: cannot listen on {host}:{port} ({e.strerror})") from None
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()
        log.warning("serving MJPEG at http://%s:%d/", self.address[0], self.address[1])

    def write(self, frame_bgr, record) -> None:
        ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._jpeg = buf.tobytes()
                self._seq += 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


def opencv_has_gui() -> bool:
    info = cv2.getBuildInformation()
    gui = info.split("GUI:", 1)[1].splitlines()[0].strip() if "GUI:" in info else "NONE"
    return gui.upper() not in ("NONE", "NO", "")


class WindowSink(Sink):
    def __init__(self, title: str = "edgevision") -> None:
        if not opencv_has_gui():
            raise BadInput("--show: this OpenCV has no GUI support (opencv-python-headless); use --serve PORT and "
                           "open the stream in a browser, or install opencv-python")
        if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise BadInput("--show: no display here (DISPLAY is not set); use --serve PORT instead")
        self.title = title
        self.closed_by_user = threading.Event()

    def write(self, frame_bgr, record) -> None:
        cv2.imshow(self.title, frame_bgr)
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self.closed_by_user.set()

    def close(self) -> None:
        cv2.destroyAllWindows()
