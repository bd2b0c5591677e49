"""Prompts for promptable segmentation, in NumPy: source-image points and boxes to the decoder's fixed slots, and
the decoder's low-resolution mask logits back to a source-size mask.

The decoder graph takes ``point_coords`` (1, slots, 2) in network-input pixels and ``point_labels`` (1, slots):
1 foreground point, 0 background point, 2 and 3 a box's top-left and bottom-right corners, -1 an empty slot
(its coordinates -1, as the official EfficientSAM pads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgevision.ops.preprocess import Geometry

PAD, BACKGROUND, FOREGROUND, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3


@dataclass(frozen=True)
class Prompt:
    """One query in source-image pixels: points with labels (1 foreground, 0 background) and/or one box."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    @property
    def kind(self) -> str:
        """For reports by prompt kind: box, point (one point), points, or box+points."""
        if self.box is not None:
            return "box" if not self.points else "box+points"
        return "point" if len(self.points) == 1 else "points"

    def slots(self) -> int:
        return len(self.points) + (2 if self.box is not None else 0)

    def to_json(self) -> dict:
        out: dict = {}
        if self.points:
            out["points"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.points]
            out["labels"] = [int(v) for v in self.labels]
        if self.box is not None:
            out["box"] = [round(float(v), 1) for v in self.box]
        return out


def make_prompt(points: Sequence[Sequence[float]] = (), labels: Sequence[int] | None = None,
                box: Sequence[float] | None = None, *, size: tuple[int, int] | None = None,
                slots: int | None = None) -> Prompt:
    """A validated Prompt. ``size`` is the source image's (width, height): points and boxes must lie in it.
    ``slots`` is the decoder's capacity (a box takes two). Raises ValueError naming the bad value."""
    if any(len(p) != 2 for p in points):
        raise ValueError("a point is x,y")
    pts = tuple((float(p[0]), float(p[1])) for p in points)
    labs = tuple(int(v) for v in (labels if labels is not None else [FOREGROUND] * len(pts)))
    if len(labs) != len(pts):
        raise ValueError(f"{len(pts)} point(s) but {len(labs)} label(s)")
    if any(v not in (FOREGROUND, BACKGROUND) for v in labs):
        raise ValueError(f"point labels are 1 (foreground) or 0 (background), got {sorted(set(labs))}")
    bx = None
    if box is not None:
        if len(box) != 4:
            raise ValueError(f"a box is x0,y0,x1,y1, got {len(box)} value(s)")
        bx = tuple(float(v) for v in box)
        if not (bx[2] > bx[0] and bx[3] > bx[1]):
            raise ValueError(f"box {','.join(f'{v:g}' for v in bx)}: needs x1 > x0 and y1 > y0")
    if not pts and bx is None:
        raise ValueError("a prompt needs at least one point or a box")
    prompt = Prompt(pts, labs, bx)
    if slots is not None and prompt.slots() > slots:
        raise ValueError(f"{len(pts)} point(s){' and a box (2 slots)' if bx else ''} need {prompt.slots()} "
                         f"slots; the decoder takes at most {slots}")
    if size is not None:
        w, h = size
        for x, y in pts:
            if not (0 <= x <= w and 0 <= y <= h):
                raise ValueError(f"point {x:g},{y:g} is outside the {w}x{h} image")
        if bx is not None and not (0 <= bx[0] and 0 <= bx[1] and bx[2] <= w and bx[3] <= h):
            raise ValueError(f"box {','.join(f'{v:g}' for v in bx)} is outside the {w}x{h} image")
    return prompt


def encode_prompt(prompt: Prompt, geometry: Geometry, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """-> ``point_coords`` (1, slots, 2) float32 in network pixels and ``point_labels`` (1, slots) float32,
    empty slots at (-1, -1) with label -1."""
    if prompt.slots() > slots:
        raise ValueError(f"the prompt needs {prompt.slots()} slots; the decoder takes {slots}")
    coords = np.full((1, slots, 2), -1.0, np.float32)
    labels = np.full((1, slots), float(PAD), np.float32)
    pts = list(prompt.points)
    labs = list(prompt.labels)
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        pts += [(x0, y0), (x1, y1)]
        labs += [BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]
    if pts:
        src = np.asarray(pts, np.float32)
        coords[0, : len(pts), 0] = src[:, 0] * geometry.scale_x + geometry.pad_x
        coords[0, : len(pts), 1] = src[:, 1] * geometry.scale_y + geometry.pad_y
        labels[0, : len(pts)] = labs
    return coords, labels


def encode_prompts(prompts: Sequence[Prompt], geometry: Geometry, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Several prompts -> (K, slots, 2) and (K, slots)."""
    if not prompts:
        return np.zeros((0, slots, 2), np.float32), np.zeros((0, slots), np.float32)
    pairs = [encode_prompt(p, geometry, slots) for p in prompts]
    return np.concatenate([c for c, _ in pairs]), np.concatenate([v for _, v in pairs])


def point_inside(mask: np.ndarray) -> tuple[float, float]:
    """The pixel centre farthest from the mask's border (the maximum of its distance transform, the middle one of a
    ridge of maxima): the point a user clicks on an object. (H, W) bool -> (x, y); ValueError on an empty mask."""
    import cv2

    if not mask.any():
        raise ValueError("an empty mask has no inside point")
    padded = np.pad(mask.astype(np.uint8), 1)  # the image border counts as outside
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    # a ridge of equal maxima (a rectangle's middle line) is common: take its pixel nearest the ridge's middle
    ys, xs = np.nonzero(dist >= dist.max() - 1e-3)
    k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
    return float(xs[k]) + 0.5, float(ys[k]) + 0.5


def grid_prompts(width: int, height: int, n: int = 8) -> list[Prompt]:
    """An n x n grid of single foreground points at cell centres (the photo fidelity check)."""
    xs = (np.arange(n) + 0.5) * width / n
    ys = (np.arange(n) + 0.5) * height / n
    return [Prompt(((float(x), float(y)),), (FOREGROUND,)) for y in ys for x in xs]


def choose_mask(iou_predictions: np.ndarray) -> int:
    """The multimask output with the highest predicted IoU, as SAM's users pick it."""
    return int(np.argmax(iou_predictions))


def logits_to_source(low_res_logits: np.ndarray, geometry: Geometry, imgsz: int) -> np.ndarray:
    """(m, m) logits over the network input -> (H, W) float32 logits in source pixels: the padding (if any)
    cropped off at low resolution, then one bilinear resize to the source size."""
    import cv2

    m = low_res_logits.shape[-1]
    f = m / imgsz
    y0, x0 = int(round(geometry.pad_y * f)), int(round(geometry.pad_x * f))
    y1 = max(int(round((geometry.pad_y + geometry.src_h * geometry.scale_y) * f)), y0 + 1)
    x1 = max(int(round((geometry.pad_x + geometry.src_w * geometry.scale_x) * f)), x0 + 1)
    crop = np.ascontiguousarray(low_res_logits[y0:y1, x0:x1], np.float32)
    return cv2.resize(crop, (geometry.src_w, geometry.src_h), interpolation=cv2.INTER_LINEAR)


def mask_to_source(low_res_logits: np.ndarray, geometry: Geometry, imgsz: int, threshold: float = 0.0) -> np.ndarray:
    """(m, m) logits over the network input -> (H, W) bool mask in source pixels (``logits_to_source`` above
    ``threshold``)."""
    return logits_to_source(low_res_logits, geometry, imgsz) > threshold


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """xyxy extent of a (H, W) bool mask in pixels, None when empty."""
    ys = np.flatnonzero(mask.any(1))
    if not ys.size:
        return None
    xs = np.flatnonzero(mask.any(0))
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; two empty masks agree perfectly (1.0)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union
