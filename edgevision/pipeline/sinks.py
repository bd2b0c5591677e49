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


class _FfmpegWriter:
    """H.264 through the ffmpeg binary that the imageio-ffmpeg wheel ships (PyPI's OpenCV has no H.264
    encoder): raw BGR frames piped in, yuv420p MP4 with the index up front, which browsers play."""

    def __init__(self, exe: str, path: Path, fps: float, size: tuple[int, int]) -> None:
        import subprocess
        import tempfile

        w, h = size
        self.log = tempfile.TemporaryFile()  # not a pipe: a chatty encoder must never block the render stage
        # its own session: Ctrl-C in the terminal stops the run, which then finishes the video, instead of
        # killing the encoder mid-file
        self.proc = subprocess.Popen(
            [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
             "-r", f"{fps:g}", "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264",
             "-preset", "veryfast", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoWriter's naming
        return self.proc.poll() is None

    def write(self, frame_bgr: np.ndarray) -> None:
        self.proc.stdin.write(np.ascontiguousarray(frame_bgr).tobytes())

    def release(self) -> None:
        self.proc.stdin.close()
        code = self.proc.wait()
        self.log.seek(0)
        error = self.log.read().decode(errors="replace").strip()
        self.log.close()
        if code != 0:
            raise OSError(f"ffmpeg failed: {error.splitlines()[-1] if error else code}")


def ffmpeg_exe() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


class VideoFileSink(Sink):
    """MP4 written to a temp name and renamed on close, so an interrupted run still leaves a playable file and
    never a half-written one under the final name. H.264 (which browsers play) through OpenCV when its build
    can encode it, else through imageio-ffmpeg's ffmpeg when installed (`pip install 'edgevision[video]'`);
    otherwise MPEG-4 Part 2 ('mp4v'), with a note."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            raise BadInput(f"--out {self.path}: the folder {self.path.parent} does not exist")
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.fps = fps
        self.writer = None
        self.frames = 0
        self.codec = ""

    def _open(self, size: tuple[int, int]):
        exe = ffmpeg_exe()
        if exe is not None:
            self.codec = "h264"
            return _FfmpegWriter(exe, self.tmp, self.fps, size)
        writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"avc1"), self.fps, size)
        if writer.isOpened():
            self.codec = "h264"
            return writer
        log.warning("--out %s: no H.264 encoder here (pip install 'edgevision[video]' adds one); writing MPEG-4 "
                    "Part 2, which most browsers do not play", self.path)
        self.codec = "mp4v"
        return cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)

    def write(self, frame_bgr, record) -> None:
        if self.writer is None:
            h, w = frame_bgr.shape[:2]
            self.writer = self._open((w, h))
            if not self.writer.isOpened():
                raise BadInput(f"--out {self.path}: cannot write this video here")
            self.size = (w, h)
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self.size:
            frame_bgr = cv2.resize(frame_bgr, self.size)
        self.writer.write(frame_bgr)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.release()
            except OSError as e:
                self.tmp.unlink(missing_ok=True)
                raise EdgevisionError(f"--out {self.path}: could not encode the video ({e})") from None
            try:
                os.replace(self.tmp, self.path)
            except OSError as e:
                self.tmp.unlink(missing_ok=True)  # no hidden partial video left behind
                raise EdgevisionError(f"--out {self.path}: cannot save the video ({e.strerror})") from None


class JsonlSink(Sink):
    """One JSON object per frame, flushed every ``flush_every`` frames and on close. The file is created with the
    first frame, so a run that fails before it (a source that does not open) leaves none, and it can be followed
    live (``tail -f``)."""

    def __init__(self, path: Path, flush_every: int = 10) -> None:
        self.path = Path(path)
        self.f = None
        self.flush_every = flush_every
        self.n = 0

    def write(self, frame_bgr, record) -> None:
        if self.f is None:
            try:
                self.f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as e:
                raise BadInput(f"--jsonl {self.path}: cannot write ({e.strerror})") from None
        self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.n += 1
        if self.n % self.flush_every == 0:
            self.f.flush()

    def close(self) -> None:
        if self.f is not None and not self.f.closed:
            self.f.close()


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
