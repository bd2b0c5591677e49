"""Procedural scenes with exact labels: the demo models' training data and the default eval set.

Every scene is a pure function of its seed, so an eval set is reproducible from ``(spec, seed, count)``
alone and never has to be stored.

A scene holds 1-6 shapes of ``SHAPE_CLASSES`` on a textured background with distractors (thin lines, arcs,
dots and blotches that belong to no class). Each shape spans 5-60 % of the image side, may be occluded by up
to half by later shapes, and no two shapes have their box centre in the same cell of the detector grid (the
YOLOv1 limit of one object per cell). Boxes are the exact extents of each shape's *visible* pixels, and masks
are the visible pixels themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgevision.data.shapes import SHAPE_CLASSES  # noqa: E402  (re-exported: rendering and labels share it)
PAD_VALUE = 114  # letterbox grey, shared with ops.preprocess


@dataclass(frozen=True)
class SceneSpec:
    """How scenes are drawn. ``size`` is (height, width) in pixels."""

    size: tuple[int, int] = (224, 224)
    grid: int = 7
    min_objects: int = 1
    max_objects: int = 6
    min_frac: float = 0.05
    max_frac: float = 0.6
    max_occlusion: float = 0.5
    letterbox_prob: float = 0.0  # chance that the content only fills a band, as after letterboxing
    distractors: tuple[int, int] = (2, 8)


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (N, 4) float32 xyxy in pixels, exact extents of the visible mask
    labels: np.ndarray  # (N,) int64 index into SHAPE_CLASSES
    masks: np.ndarray  # (N, H, W) bool, visible pixels
    meta: dict = field(default_factory=dict)

    def semantic(self) -> np.ndarray:
        """(H, W) uint8 label map: 0 is background, k+1 is class k."""
        out = np.zeros(self.image.shape[:2], np.uint8)
        for label, mask in zip(self.labels, self.masks):
            out[mask] = label + 1
        return out


def random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(60, 256), rng.integers(70, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray, strength: float) -> np.ndarray:
    """A float (h, w, 3) image around ``base``: solid, stripes, checker, gradient or noise."""
    kind = rng.integers(0, 5)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    if kind == 0:
        return img
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    other = base + rng.uniform(-1, 1, 3).astype(np.float32) * 120 * strength
    if kind == 1:  # stripes
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(4, 24)
        t = (np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period) > 0)[..., None]
        img = np.where(t, img, other)
    elif kind == 2:  # checker
        cell = rng.uniform(4, 20)
        t = (((xx // cell) + (yy // cell)) % 2 == 0)[..., None]
        img = np.where(t, img, other)
    elif kind == 3:  # gradient
        theta = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(theta) + yy * math.sin(theta)) / max(h, w)
        t = ((t - t.min()) / max(float(np.ptp(t)), 1e-6))[..., None]
        img = img * (1 - t) + other * t
    else:  # smooth noise
        small = rng.uniform(-1, 1, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
        img = img + cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * 70 * strength
    return img


def shape_mask(rng: np.random.Generator, cls: int, h: int, w: int, cx: float, cy: float, size: float) -> np.ndarray:
    """Filled mask of one shape that fits in a circle of diameter ``size`` pixels."""
    mask = np.zeros((h, w), np.uint8)
    angle = rng.uniform(0, 2 * math.pi)
    name = SHAPE_CLASSES[cls]
    r = size / 2
    if name == "circle":
        aspect = rng.uniform(0.75, 1.0)
        cv2.ellipse(mask, (round(cx * 16), round(cy * 16)), (round(r * 16), round(r * aspect * 16)),
                    math.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, shift=4)
        return mask.astype(bool)
    if name == "rectangle":
        aspect = rng.uniform(0.45, 1.0)
        pts = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]], np.float32) * r
    elif name == "triangle":
        pts = np.array([[math.cos(a), math.sin(a)] for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)],
                       np.float32) * r
    elif name == "star":
        inner = rng.uniform(0.38, 0.5)
        pts = np.array([[math.cos(a) * (1 if i % 2 == 0 else inner), math.sin(a) * (1 if i % 2 == 0 else inner)]
                        for i, a in enumerate(np.linspace(-math.pi / 2, 1.5 * math.pi, 10, endpoint=False))],
                       np.float32) * r
    else:  # cross
        t = rng.uniform(0.28, 0.4)
        pts = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t],
                        [-1, -t], [-t, -t]], np.float32) * r
    pts = pts * (r / np.linalg.norm(pts, axis=1).max())  # circumradius r: the shape never exceeds `size`
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], np.float32)
    pts = pts @ rot.T + np.array([cx, cy], np.float32)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def add_distractors(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    h, w = img.shape[:2]
    side = min(h, w)
    for _ in range(count):
        colour = tuple(float(c) for c in random_colour(rng))
        kind = rng.integers(0, 4)
        if kind == 0:  # thin line
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind == 1:  # open arc
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(side // 10, side // 3)), int(rng.integers(side // 10, side // 3)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, centre, axes, 0, start, start + float(rng.uniform(40, 200)), colour, 1, cv2.LINE_AA)
        elif kind == 2:  # dots far smaller than the smallest object
            for _ in range(int(rng.integers(3, 12))):
                c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
                cv2.circle(img, c, max(1, int(side * rng.uniform(0.004, 0.012))), colour, -1, cv2.LINE_AA)
        else:  # soft low-contrast blotch
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            blotch = np.zeros((h, w), np.float32)
            cv2.circle(blotch, c, int(rng.integers(side // 12, side // 4)), 1.0, -1)
            blotch = cv2.GaussianBlur(blotch, (0, 0), side / 20)[..., None] * 0.35
            img[:] = img * (1 - blotch) + np.array(colour, np.float32) * blotch


def _content_rect(rng: np.random.Generator, spec: SceneSpec) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of the drawn area; the rest is letterbox padding."""
    h, w = spec.size
    if rng.random() >= spec.letterbox_prob:
        return 0, 0, h, w
    keep = rng.uniform(0.56, 0.9)  # 16:9 .. ~10:9 content in a square frame
    if rng.random() < 0.5:
        ch = int(round(h * keep))
        y0 = (h - ch) // 2
        return y0, 0, y0 + ch, w
    cw = int(round(w * keep))
    x0 = (w - cw) // 2
    return 0, x0, h, x0 + cw


def render_scene(seed: int, spec: SceneSpec = SceneSpec()) -> Scene:
    """Draw the scene of ``seed``; the same seed and spec always give the same pixels and labels."""
    rng = np.random.default_rng(seed)
    h, w = spec.size
    y0, x0, y1, x1 = _content_rect(rng, spec)
    ch, cw = y1 - y0, x1 - x0
    side = min(ch, cw)

    bg = texture(rng, ch, cw, random_colour(rng) * rng.uniform(0.4, 1.0), strength=rng.uniform(0.2, 0.6))
    add_distractors(rng, bg, int(rng.integers(*spec.distractors, endpoint=True)))
    bg_mean = bg.reshape(-1, 3).mean(0)

    full_masks: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    labels: list[int] = []
    fills: list[tuple[slice, slice, np.ndarray]] = []  # texture over each shape's bounding box
    target = int(rng.integers(spec.min_objects, spec.max_objects, endpoint=True))
    attempts = 0
    while len(labels) < target and attempts < 60:
        attempts += 1
        cls = int(rng.integers(0, len(SHAPE_CLASSES)))
        size = side * math.exp(rng.uniform(math.log(spec.min_frac), math.log(spec.max_frac)))
        r = size / 2
        if cw - 2 * r < 1 or ch - 2 * r < 1:
            continue
        cx, cy = rng.uniform(r, cw - r), rng.uniform(r, ch - r)
        mask = shape_mask(rng, cls, ch, cw, cx, cy, size)
        area = mask.sum()
        if area < 9:
            continue
        new_visible = [v & ~mask for v in visible]
        if any(nv.sum() < (1 - spec.max_occlusion) * fm.sum() for nv, fm in zip(new_visible, full_masks)):
            continue
        candidate = new_visible + [mask]
        centres = [_centre_cell(m, y0, x0, h, w, spec.grid) for m in candidate]
        if None in centres or len(set(centres)) != len(centres):
            continue
        colour = random_colour(rng)
        if np.abs(colour - bg_mean).sum() < 90:
            colour = 255 - colour
        bx0, by0, bx1, by1 = (int(v) for v in _mask_box(mask))
        fills.append((slice(by0, by1), slice(bx0, bx1),
                      texture(rng, by1 - by0, bx1 - bx0, colour, strength=rng.uniform(0.1, 0.35))))
        full_masks.append(mask)
        visible = candidate
        labels.append(cls)

    canvas = bg
    for (ys, xs, fill), mask in zip(fills, full_masks):
        region = mask[ys, xs]
        canvas[ys, xs][region] = fill[region]
    noise = rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(0, 6))
    canvas = np.clip(canvas + noise, 0, 255).astype(np.uint8)

    image = np.full((h, w, 3), PAD_VALUE, np.uint8)
    image[y0:y1, x0:x1] = canvas
    masks = np.zeros((len(labels), h, w), bool)
    for i, v in enumerate(visible):
        masks[i, y0:y1, x0:x1] = v
    boxes = np.array([_mask_box(m) for m in masks], np.float32).reshape(-1, 4)
    meta = {"seed": seed, "content": [y0, x0, y1, x1], "full_area": [int(m.sum()) for m in full_masks]}
    return Scene(image, boxes, np.array(labels, np.int64), masks, meta=meta)


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)


def _centre_cell(mask: np.ndarray, y0: int, x0: int, h: int, w: int, grid: int) -> tuple[int, int] | None:
    if not mask.any():
        return None
    bx0, by0, bx1, by1 = _mask_box(mask)
    cx, cy = x0 + (bx0 + bx1) / 2, y0 + (by0 + by1) / 2
    return min(int(cy / h * grid), grid - 1), min(int(cx / w * grid), grid - 1)


def scene_seeds(base_seed: int, count: int) -> list[int]:
    """Seeds of an eval/calibration set; spread out so that nearby sets do not share scenes."""
    return [base_seed * 1_000_003 + i for i in range(count)]
