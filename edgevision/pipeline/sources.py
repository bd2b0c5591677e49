"""Frame sources: cameras, video files, network streams, image folders, GStreamer pipelines, picamera2.

``open_source(spec)`` parses what a user types after ``--source``. Every source yields BGR uint8 frames
(OpenCV's order) and distinguishes three outcomes of a read: a frame, a corrupt frame (skip it), or no frame
(end of input for files and folders; a fault to reconnect from for live sources).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevision.errors import BadInput, MissingDependency

log = logging.getLogger("edgevision")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Jetson CSI camera (IMX219 and friends) through NVIDIA's argus source, converted to BGR for OpenCV.
JETSON_CSI_PRESET = ("nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, "
                     "height={height}, framerate={fps}/1 ! nvvidconv flip-method=0 ! video/x-raw, format=BGRx ! "
                     "videoconvert ! video/x-raw, format=BGR ! appsink drop=1 max-buffers=1")


class Corrupt:
    """Marker returned by ``read`` for a frame that arrived but cannot be used."""


CORRUPT = Corrupt()


@dataclass
class SourceInfo:
    description: str
    live: bool  # cameras and streams: realtime by default, reconnect on faults
    fps: float | None = None
    size: tuple[int, int] | None = None  # (width, height)


class Source(ABC):
    info: SourceInfo

    @abstractmethod
    def open(self) -> None:
        """Open or reopen; raise BadInput when the source cannot be opened at all."""

    @abstractmethod
    def read(self) -> np.ndarray | Corrupt | None:
        """A BGR frame, CORRUPT, or None (no frame: end of input, or a fault on a live source)."""

    def close(self) -> None:  # noqa: B027 - sources without resources need not override
        pass


def _valid_frame(frame) -> bool:
    return isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.size > 0 \
        and frame.dtype == np.uint8


class OpenCVSource(Source):
    """cv2.VideoCapture: camera index, /dev/videoN, video file, rtsp://, http://, or a GStreamer string."""

    def __init__(self, target: int | str, info: SourceInfo, api: int = cv2.CAP_ANY, capture_factory=None) -> None:
        self.target = target
        self.info = info
        self.api = api
        self._factory = capture_factory or (lambda t, a: cv2.VideoCapture(t, a))
        self.cap = None

    def open(self) -> None:
        self.close()
        self.cap = self._factory(self.target, self.api)
        if not self.cap.isOpened():
            raise BadInput(f"--source {self.info.description}: cannot be opened; check the path, device or URL")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.info.fps = fps if fps and fps > 0 and fps < 1000 else self.info.fps
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w > 0 and h > 0:
            self.info.size = (w, h)

    def read(self):
        if self.cap is None:
            return None
        ok, frame = self.cap.read()
        if not ok:
            return None
        return frame if _valid_frame(frame) else CORRUPT

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageFolderSource(Source):
    """A folder or a glob of images, in name order; unreadable files are corrupt frames."""

    def __init__(self, paths: list[Path], description: str) -> None:
        self.paths = paths
        self.info = SourceInfo(description, live=False)
        self._i = 0

    def open(self) -> None:
        self._i = 0

    def read(self):
        if self._i >= len(self.paths):
            return None
        path = self.paths[self._i]
        self._i += 1
        data = np.fromfile(str(path), np.uint8)
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        return frame if _valid_frame(frame) else CORRUPT


class Picamera2Source(Source):
    """The Raspberry Pi camera module through picamera2 (imported only when asked for)."""

    def __init__(self, size: tuple[int, int] = (640, 480)) -> None:
        self.info = SourceInfo("picamera2:", live=True, size=size)
        self.cam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise MissingDependency("picamera2", "rpi", "the Raspberry Pi camera (on Raspberry Pi OS: "
                                    "sudo apt install python3-picamera2)") from None
        self.close()
        self.cam = Picamera2()
        # libcamera's "RGB888" is stored B, G, R per pixel: OpenCV's order
        config = self.cam.create_video_configuration(main={"size": self.info.size, "format": "RGB888"})
        self.cam.configure(config)
        self.cam.start()

    def read(self):
        if self.cam is None:
            return None
        frame = self.cam.capture_array()
        return np.ascontiguousarray(frame[..., :3]) if _valid_frame(frame[..., :3]) else CORRUPT

    def close(self) -> None:
        if self.cam is not None:
            self.cam.stop()
            self.cam.close()
            self.cam = None


def opencv_has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m and m.group(1).upper() not in ("NO", "NONE"))


def jetson_csi_pipeline(sensor: int = 0, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    return JETSON_CSI_PRESET.format(sensor=sensor, width=width, height=height, fps=fps)


def open_source(spec: str, capture_factory=None) -> Source:
    """Parse ``--source``: 0 | /dev/video0 | file.mp4 | rtsp://... | http://... | folder | 'imgs/*.jpg' |
    gst:<pipeline> | gst:jetson-csi | picamera2:"""
    s = spec.strip()
    if s.startswith("gst:"):
        if not opencv_has_gstreamer():
            raise BadInput("--source gst:...: this OpenCV has no GStreamer support (PyPI's wheels have none); "
                           "use the OpenCV that ships with JetPack or a GStreamer-enabled build")
        pipeline = s[4:].strip()
        if pipeline in ("jetson-csi", "csi"):
            pipeline = jetson_csi_pipeline()
        return OpenCVSource(pipeline, SourceInfo(f"gst:{pipeline[:60]}", live=True), cv2.CAP_GSTREAMER,
                            capture_factory)
    if s.startswith("picamera2:"):
        return Picamera2Source()
    if re.fullmatch(r"\d+", s):
        return OpenCVSource(int(s), SourceInfo(f"camera {s}", live=True), cv2.CAP_ANY, capture_factory)
    if re.fullmatch(r"/dev/video\d+", s):
        return OpenCVSource(s, SourceInfo(s, live=True), cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY,
                            capture_factory)
    if re.match(r"^(rtsp|rtsps|http|https|rtmp|udp|tcp)://", s, re.IGNORECASE):
        return OpenCVSource(s, SourceInfo(re.sub(r"//[^@/]*@", "//***@", s), live=True), cv2.CAP_FFMPEG,
                            capture_factory)
    path = Path(s)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BadInput(f"--source {s}: no images in this folder")
        return ImageFolderSource(files, f"{len(files)} images in {s}")
    if any(c in s for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(s) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BadInput(f"--source {s}: the pattern matches no images")
        return ImageFolderSource(files, f"{len(files)} images matching {s}")
    if path.is_file():
        return OpenCVSource(str(path), SourceInfo(str(path), live=False), cv2.CAP_ANY, capture_factory)
    raise BadInput(f"--source {s}: no such file, folder, camera or stream; see `edgevision run --help`")


class Reconnector:
    """Reopens a live source with exponential backoff, counting attempts, bounded by max_reconnects."""

    def __init__(self, source: Source, max_reconnects: int, base_delay: float = 0.25, max_delay: float = 4.0,
                 sleep=time.sleep) -> None:
        self.source = source
        self.max_reconnects = max_reconnects
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.reconnects = 0
        self._streak = 0

    def recovered(self) -> None:
        self._streak = 0

    def reconnect(self, stop) -> bool:
        """Try until the source reopens; False when the budget is spent or a stop was requested."""
        while not stop.is_set():
            if self.reconnects >= self.max_reconnects:
                return False
            delay = min(self.max_delay, self.base_delay * (2**self._streak))
            self._streak += 1
            self.reconnects += 1
            log.warning("source %s lost; reconnect %d/%d in %.2fs", self.source.info.description, self.reconnects,
                        self.max_reconnects, delay)
            if stop.wait(delay):
                return False
            try:
                self.source.open()
                return True
            except (BadInput, OSError, cv2.error) as e:
                log.warning("reconnect %d failed: %s", self.reconnects, e)
        return False
