"""Overlays: boxes with class names and scores, segmentation masks, and a small FPS/latency panel.

All drawing is in place on a BGR frame (what OpenCV writers and windows take).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgevision.ops.masks import palette
from edgevision.ops.results import Detections, Segmentation


def draw_detections(frame_bgr: np.ndarray, dets: Detections, labels: Sequence[str]) -> np.ndarray:
    colours = palette(max(len(labels), 1) + 1)[1:]
    h, w = frame_bgr.shape[:2]
    thickness = max(1, round(min(h, w) / 320))
    for box, score, cls in zip(dets.boxes, dets.scores, dets.class_ids):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        colour = tuple(int(c) for c in colours[int(cls) % len(colours)][::-1])
        cv2.rectangle(frame_bgr, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
        name = labels[int(cls)] if int(cls) < len(labels) else str(int(cls))
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y0, th + base + 2)
        cv2.rectangle(frame_bgr, (x0, ty - th - base - 2), (x0 + tw + 4, ty), colour, -1)
        cv2.putText(frame_bgr, text, (x0 + 2, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return frame_bgr


def draw_segmentation(frame_bgr: np.ndarray, seg: Segmentation, labels: Sequence[str], alpha: float = 0.5) -> np.ndarray:
    colours = palette(max(len(labels), 2))[:, ::-1]  # BGR
    lm = seg.label_map
    if lm.shape[:2] != frame_bgr.shape[:2]:
        lm = cv2.resize(lm, (frame_bgr.shape[1], frame_bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
    fg = lm > 0
    if fg.any():
        blended = (frame_bgr[fg] * (1 - alpha) + colours[np.minimum(lm[fg], len(colours) - 1)] * alpha)
        frame_bgr[fg] = blended.astype(np.uint8)
    return frame_bgr


def draw_result(frame_bgr: np.ndarray, result, labels: Sequence[str]) -> np.ndarray:
    """The overlay of whichever task produced ``result``."""
    from edgevision.tasks import task_for_result

    return task_for_result(result).draw(frame_bgr, result, labels)


def draw_panel(frame_bgr: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A translucent box in the top-left corner with one line of text per entry (FPS, latencies)."""
    if not lines:
        return frame_bgr
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0] for t in lines]
    w = max(s[0] for s in sizes) + 10
    h = sum(s[1] + 6 for s in sizes) + 6
    roi = frame_bgr[0:h, 0:w]
    roi[:] = (roi * 0.4).astype(np.uint8)
    y = 4
    for text, (_, th) in zip(lines, sizes):
        y += th + 6
        cv2.putText(frame_bgr, text, (5, y - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return frame_bgr
