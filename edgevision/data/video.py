"""Generated videos of moving shapes with exact per-frame boxes: demo input and pipeline test data.

Each shape travels its own horizontal lane, bouncing off the frame edges, so shapes never overlap and their
box centres never share a detector cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevision.data.synthetic import SHAPE_CLASSES, add_distractors, random_colour, shape_mask, texture


@dataclass
class MovingShape:
    cls: int
    size: float
    lane_y: float
    x: float
    vx: float
    colour: np.ndarray
    seed: int


@dataclass
class VideoTruth:
    boxes: list[np.ndarray]  # per frame (N, 4) xyxy
    labels: list[np.ndarray]  # per frame (N,)

    def to_json(self) -> dict:
        return {"classes": list(SHAPE_CLASSES),
                "frames": [{"boxes": b.round(1).tolist(), "labels": lb.tolist()} for b, lb in zip(self.boxes, self.labels)]}


def _plan(rng: np.random.Generator, h: int, w: int, lanes: int) -> list[MovingShape]:
    lane_h = h / lanes
    shapes = []
    for i in range(lanes):
        size = float(rng.uniform(0.55, 0.8) * lane_h)
        shapes.append(MovingShape(
            cls=int(rng.integers(0, len(SHAPE_CLASSES))), size=size, lane_y=(i + 0.5) * lane_h,
            x=float(rng.uniform(size, w - size)), vx=float(rng.choice([-1, 1]) * rng.uniform(0.006, 0.015) * w),
            colour=random_colour(rng), seed=int(rng.integers(0, 2**31)),
        ))
    return shapes


class MovingShapesVideo:
    """Frames on demand: ``frame(i)`` -> (image RGB, boxes, labels); deterministic by seed."""

    def __init__(self, size: tuple[int, int] = (480, 640), lanes: int = 3, seed: int = 0) -> None:
        self.h, self.w = size
        rng = np.random.default_rng(seed)
        self.background = np.clip(texture(rng, self.h, self.w, random_colour(rng) * 0.6, 0.3), 0, 255)
        add_distractors(rng, self.background, 6)
        self.background = self.background.astype(np.uint8)
        self.shapes = _plan(rng, self.h, self.w, lanes)

    def _x(self, s: MovingShape, i: int) -> float:
        lo, hi = s.size / 2 + 2, self.w - s.size / 2 - 2
        span = hi - lo
        t = (s.x - lo + s.vx * i) % (2 * span)
        return lo + (t if t <= span else 2 * span - t)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img = self.background.copy()
        boxes, labels = [], []
        for s in self.shapes:
            cx = self._x(s, i)
            mask = shape_mask(np.random.default_rng(s.seed), s.cls, self.h, self.w, cx, s.lane_y, s.size)
            img[mask] = s.colour.astype(np.uint8)
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            boxes.append([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])
            labels.append(s.cls)
        return img, np.array(boxes, np.float32), np.array(labels, np.int64)


def write_video(path: Path, frames: int = 60, size: tuple[int, int] = (480, 640), fps: float = 15.0,
                seed: int = 0, lanes: int = 3) -> VideoTruth:
    """Write a video of moving shapes (.mp4: mp4v, .avi: MJPG) and return the exact boxes of every frame."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video = MovingShapesVideo(size, lanes, seed)
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size[1], size[0]))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MP4 here")
    truth = VideoTruth([], [])
    try:
        for i in range(frames):
            img, boxes, labels = video.frame(i)
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            truth.boxes.append(boxes)
            truth.labels.append(labels)
    finally:
        writer.release()
    return truth


def write_truth(path: Path, truth: VideoTruth) -> None:
    Path(path).write_text(json.dumps(truth.to_json()), encoding="utf-8")
