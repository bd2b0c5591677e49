"""Overlays: boxes with class names and scores, segmentation masks, and a small FPS/latency panel.

All drawing is in place on a BGR frame (what OpenCV writers and windows take).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgevision.ops.results import Classification, Detections, PromptMasks, Segmentation, TrackedObjects


# Saturated, evenly spaced hues (BGR), far from the greys and pastels of most scenes and of the synthetic shapes.
_DISTINCT = np.array([(0, 0, 255), (0, 200, 255), (0, 255, 0), (255, 128, 0), (255, 0, 255), (255, 255, 0),
                      (0, 128, 255), (128, 0, 255), (0, 255, 160), (255, 0, 128)], np.uint8)


def class_colours(n: int) -> np.ndarray:
    """(n, 3) BGR colours, one per class, cycling through ``_DISTINCT``."""
    return _DISTINCT[np.arange(max(n, 1)) % len(_DISTINCT)]


def _place_label(placed: list[tuple[int, int, int, int]], x: int, y: int, w: int, h: int,
                 frame_hw: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner for a w x h label near (x, y) (above the box), moved down in steps of its height until
    it overlaps no label already placed: crowded images stay readable."""
    fh, fw = frame_hw
    x = min(max(x, 0), max(fw - w, 0))
    y = max(y - h, 0)
    for _ in range(40):
        if not any(x < px + pw and px < x + w and y < py + ph and py < y + h for px, py, pw, ph in placed):
            break
        y += h
        if y + h > fh:
            y = 0
            x = min(x + w // 2, max(fw - w, 0))
    placed.append((x, y, w, h))
    return x, y


def draw_detections(frame_bgr: np.ndarray, dets: Detections, labels: Sequence[str],
                    colour: tuple[int, int, int] | None = None, suffix: str = "", text: bool = True) -> np.ndarray:
    """Boxes with class and score; labels never overprint each other. ``colour`` fixes one colour for every box
    (e.g. reference vs artifact); ``suffix`` is appended to each label; ``text=False`` draws the boxes only."""
    colours = class_colours(len(labels))
    h, w = frame_bgr.shape[:2]
    thickness = max(1, round(min(h, w) / 320))
    scale = max(0.4, min(h, w) / 900)
    placed: list[tuple[int, int, int, int]] = []
    order = np.argsort(-dets.scores)  # the most confident labels get the best places
    box_colours = [tuple(int(v) for v in (colour if colour is not None else colours[int(c) % len(colours)]))
                   for c in dets.class_ids]
    for i in order:  # all boxes first, then all labels, so that no box line crosses a label
        x0, y0, x1, y1 = (int(round(v)) for v in dets.boxes[i])
        cv2.rectangle(frame_bgr, (x0, y0), (x1, y1), box_colours[i], thickness, cv2.LINE_AA)
    if not text:
        return frame_bgr
    for i in order:
        cls = int(dets.class_ids[i])
        x0, y0 = (int(round(v)) for v in dets.boxes[i][:2])
        name = labels[cls] if cls < len(labels) else str(cls)
        label = f"{name} {dets.scores[i]:.2f}{suffix}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        lx, ly = _place_label(placed, x0, y0, tw + 4, th + base + 4, (h, w))
        cv2.rectangle(frame_bgr, (lx, ly), (lx + tw + 4, ly + th + base + 4), box_colours[i], -1)
        cv2.putText(frame_bgr, label, (lx + 2, ly + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return frame_bgr


def draw_segmentation(frame_bgr: np.ndarray, seg: Segmentation, labels: Sequence[str], alpha: float = 0.45,
                      legend: bool = True) -> np.ndarray:
    """Classes blended over the frame in saturated colours that stand apart from it, each region outlined, and
    a legend of the classes present (label 0, background, stays clear)."""
    colours = class_colours(max(len(labels), 2))
    lm = seg.label_map
    if lm.shape[:2] != frame_bgr.shape[:2]:
        lm = cv2.resize(lm, (frame_bgr.shape[1], frame_bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
    present = [int(c) for c in np.unique(lm) if c > 0]
    fg = lm > 0
    if fg.any():
        tint = colours[np.minimum(lm[fg], len(colours) - 1)]
        frame_bgr[fg] = (frame_bgr[fg] * (1 - alpha) + tint * alpha).astype(np.uint8)
    thickness = max(1, round(min(frame_bgr.shape[:2]) / 400))
    for c in present:
        contours, _ = cv2.findContours((lm == c).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(frame_bgr, contours, -1, tuple(int(v) for v in colours[c % len(colours)]), thickness,
                         cv2.LINE_AA)
    if legend and present:
        draw_legend(frame_bgr, [(labels[c] if c < len(labels) else str(c), colours[c % len(colours)])
                                for c in present])
    return frame_bgr


def draw_prompt_masks(frame_bgr: np.ndarray, result: PromptMasks, alpha: float = 0.45) -> np.ndarray:
    """Each prompt's mask blended in its own colour and outlined, its points (green foreground, red background)
    and box drawn, and its predicted IoU written at the mask's top-left corner."""
    colours = class_colours(max(len(result), 2))
    h, w = frame_bgr.shape[:2]
    thickness = max(1, round(min(h, w) / 400))
    placed: list[tuple[int, int, int, int]] = []
    for k, (mask, score, prompt) in enumerate(zip(result.masks, result.scores, result.prompts)):
        colour = colours[k % len(colours)]
        bgr = tuple(int(v) for v in colour)
        draw_mask(frame_bgr, mask, colour, f"{k}: {float(score):.2f}", placed, thickness, alpha)
        if prompt.box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
            cv2.rectangle(frame_bgr, (x0, y0), (x1, y1), bgr, thickness, cv2.LINE_AA)
        for (x, y), label in zip(prompt.points, prompt.labels):
            centre = (int(round(x)), int(round(y)))
            cv2.circle(frame_bgr, centre, 3 + thickness, (0, 200, 0) if label == 1 else (0, 0, 220), -1, cv2.LINE_AA)
            cv2.circle(frame_bgr, centre, 3 + thickness, (255, 255, 255), 1, cv2.LINE_AA)
    return frame_bgr


def draw_tracks(frame_bgr: np.ndarray, result: TrackedObjects, alpha: float = 0.45) -> np.ndarray:
    """Each present object's mask blended in the colour of its ID (the same colour on every frame), outlined,
    with "#id score" at its top-left corner; absent objects are not drawn."""
    h, w = frame_bgr.shape[:2]
    thickness = max(1, round(min(h, w) / 400))
    placed: list[tuple[int, int, int, int]] = []
    for obj in result.objects:
        mask = obj.mask
        if not obj.present or not mask.any():
            continue
        colour = _DISTINCT[obj.obj_id % len(_DISTINCT)]
        draw_mask(frame_bgr, mask, colour, f"#{obj.obj_id} {obj.score:.1f}", placed, thickness, alpha)
    return frame_bgr


def draw_mask(frame_bgr: np.ndarray, mask: np.ndarray, colour: np.ndarray, text: str,
              placed: list[tuple[int, int, int, int]], thickness: int, alpha: float) -> None:
    """One mask blended in ``colour`` and outlined, with ``text`` on a label at its top-left corner, placed
    clear of the labels already ``placed``. The mask is resized to the frame (nearest) if it differs."""
    h, w = frame_bgr.shape[:2]
    if mask.shape != (h, w):
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    if not mask.any():
        return
    bgr = tuple(int(v) for v in colour)
    frame_bgr[mask] = (frame_bgr[mask] * (1 - alpha) + colour * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(frame_bgr, contours, -1, bgr, thickness, cv2.LINE_AA)
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    x, y = _place_label(placed, int(xs[0]), int(ys[0]), tw + 4, th + 6, (h, w))
    cv2.rectangle(frame_bgr, (x, y), (x + tw + 4, y + th + 6), bgr, -1)
    cv2.putText(frame_bgr, text, (x + 2, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)


def draw_classification(frame_bgr: np.ndarray, result: Classification, labels: Sequence[str],
                        top: int = 3) -> np.ndarray:
    """The top classes with their scores, top left, on a dark backing."""
    lines = [f"{labels[int(c)] if int(c) < len(labels) else int(c)}  {float(s):.2f}"
             for c, s in zip(result.class_ids[:top], result.scores[:top])]
    scale = 0.55
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0] for t in lines]
    if not sizes:
        return frame_bgr
    w = max(s[0] for s in sizes) + 12
    h = sum(s[1] + 8 for s in sizes) + 6
    roi = frame_bgr[0:h, 0:w]
    roi[:] = (roi * 0.4).astype(np.uint8)
    y = 4
    for i, (text, (_, th)) in enumerate(zip(lines, sizes)):
        y += th + 8
        colour = (80, 255, 80) if i == 0 else (230, 230, 230)
        cv2.putText(frame_bgr, text, (6, y - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return frame_bgr


def draw_legend(frame_bgr: np.ndarray, entries: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Colour swatches with names, in the bottom-right corner on a translucent backing."""
    h, w = frame_bgr.shape[:2]
    scale = max(0.4, min(h, w) / 900)
    sizes = [cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0] for name, _ in entries]
    row = max(s[1] for s in sizes) + 8
    box_w = max(s[0] for s in sizes) + row + 12
    box_h = row * len(entries) + 6
    x0, y0 = max(w - box_w - 4, 0), max(h - box_h - 4, 0)
    roi = frame_bgr[y0 : y0 + box_h, x0 : x0 + box_w]
    roi[:] = (roi * 0.45).astype(np.uint8)
    for i, (name, colour) in enumerate(entries):
        y = y0 + 4 + i * row
        cv2.rectangle(frame_bgr, (x0 + 4, y + 2), (x0 + row, y + row - 4), tuple(int(v) for v in colour), -1)
        cv2.putText(frame_bgr, name, (x0 + row + 6, y + row - 6), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return frame_bgr


def draw_result(frame_bgr: np.ndarray, result, labels: Sequence[str]) -> np.ndarray:
    """The overlay of whichever task produced ``result``."""
    from edgevision.tasks import task_for_result

    return task_for_result(result).draw(frame_bgr, result, labels)


def draw_panel(frame_bgr: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The stats panel: small text on a light translucent backing in the bottom-left corner, where it hides
    the least of the scene (detections stay visible through it)."""
    if not lines:
        return frame_bgr
    h_frame = frame_bgr.shape[0]
    scale = 0.4
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0] for t in lines]
    w = max(s[0] for s in sizes) + 8
    h = sum(s[1] + 5 for s in sizes) + 5
    y0 = max(h_frame - h, 0)
    roi = frame_bgr[y0:h_frame, 0:w]
    roi[:] = (roi * 0.65).astype(np.uint8)
    y = y0 + 3
    for text, (_, th) in zip(lines, sizes):
        y += th + 5
        cv2.putText(frame_bgr, text, (4, y - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return frame_bgr
