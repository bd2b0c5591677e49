"""Synthetic clips for video object tracking, with the exact visible mask of every object on every frame.

A clip is a static textured background and a few shapes that move on smooth paths, change scale and pass in
front of each other. Every clip has a target (object 0), fully visible on frame 0, where it is prompted with its
tight box. Depending on the seed, a clip also has:

* an occluder that crosses the target's path in front of it;
* a target that leaves the frame and comes back;
* a distractor of the target's class and a similar colour.

``render_clip(seed)`` is deterministic; ``clip_seeds`` gives disjoint seeds for training and evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgevision.data.synthetic import SHAPE_CLASSES, add_distractors, random_colour, shape_mask, texture


@dataclass(frozen=True)
class ClipSpec:
    size: int = 256
    length: int = 24
    objects: tuple[int, int] = (2, 4)  # how many, inclusive, before the occluder and the distractor
    p_occluder: float = 0.5
    p_leave: float = 0.35
    p_distractor: float = 0.5
    # long clips (drift checks): objects bounce off the frame edges instead of drifting out for good
    bounce: bool = False


@dataclass
class Clip:
    frames: np.ndarray  # (T, S, S, 3) uint8 RGB
    masks: np.ndarray  # (T, K, S, S) bool: what is visible of each object
    classes: np.ndarray  # (K,) shape class of each object
    events: dict  # which of "occluder", "leaves", "distractor" this clip has

    def target_box(self, frame: int = 0) -> tuple[int, int, int, int]:
        """The target's tight box (x0, y0, x1, y1) on ``frame``."""
        ys, xs = np.nonzero(self.masks[frame, 0])
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@dataclass
class _Mover:
    cls: int
    colour: np.ndarray
    shape_seed: int
    fill: np.ndarray  # (S, S, 3) float: the object's texture, pasted where it is
    start: np.ndarray  # (2,) centre at t = 0
    velocity: np.ndarray  # (2,) pixels per frame
    wobble: np.ndarray  # (2,) amplitude of a sinusoidal sway
    period: float
    phase: float
    size0: float
    size1: float  # diameter at the last frame: scale changes linearly
    bounds: float = 0.0  # > 0: the drift reflects off [0, bounds] (ClipSpec.bounce)

    def at(self, t: int, length: int) -> tuple[float, float, float]:
        sway = self.wobble * math.sin(2 * math.pi * t / self.period + self.phase)
        drift = self.start + self.velocity * t
        if self.bounds > 0:
            drift = self.bounds - np.abs(np.mod(drift, 2 * self.bounds) - self.bounds)
        cx, cy = drift + sway
        size = self.size0 + (self.size1 - self.size0) * t / max(length - 1, 1)
        return float(cx), float(cy), float(size)


def _mover(rng: np.random.Generator, s: int, cls: int, colour: np.ndarray, start, velocity, size0, size1,
           wobble=(0.0, 0.0)) -> _Mover:
    return _Mover(cls=cls, colour=colour, shape_seed=int(rng.integers(0, 2**31)),
                  fill=texture(rng, s, s, colour, 0.25), start=np.asarray(start, np.float32),
                  velocity=np.asarray(velocity, np.float32), wobble=np.asarray(wobble, np.float32),
                  period=float(rng.uniform(12, 40)), phase=float(rng.uniform(0, 2 * math.pi)),
                  size0=float(size0), size1=float(size1))


def _similar_colour(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    return np.clip(colour + rng.uniform(-25, 25, 3), 0, 255).astype(np.float32)


def render_clip(seed: int, spec: ClipSpec = ClipSpec()) -> Clip:
    rng = np.random.default_rng(seed)
    s, length = spec.size, spec.length
    background = np.clip(texture(rng, s, s, random_colour(rng) * 0.6, 0.3), 0, 255)
    add_distractors(rng, background, 4)

    def speed() -> np.ndarray:
        return rng.uniform(-1, 1, 2) * s * rng.uniform(0.005, 0.02)

    # the target: fully inside the frame at t = 0, away from the edges
    size0 = s * rng.uniform(0.18, 0.32)
    target_cls, target_colour = int(rng.integers(0, len(SHAPE_CLASSES))), random_colour(rng)
    leaves = rng.random() < spec.p_leave
    start = rng.uniform(size0 * 0.8, s - size0 * 0.8, 2)
    if leaves:
        # a sway along x wide enough to leave the frame mid-clip and come back by its end
        size1 = size0 * rng.uniform(0.7, 1.4)
        amp = s / 2 + max(size0, size1) / 2 + s * rng.uniform(0.05, 0.15)
        target = _mover(rng, s, target_cls, target_colour, (s / 2, start[1]), (0.0, 0.0), size0, size1,
                        wobble=(amp, 0.0))
        target.period = float(length * rng.uniform(0.9, 1.0))
        target.phase = float(rng.uniform(-0.25, 0.25))
    else:
        target = _mover(rng, s, target_cls, target_colour, start, speed(), size0, size0 * rng.uniform(0.6, 1.6),
                        wobble=rng.uniform(0, s * 0.05, 2))
    movers = [target]
    for _ in range(int(rng.integers(spec.objects[0], spec.objects[1] + 1)) - 1):
        movers.append(_mover(rng, s, int(rng.integers(0, len(SHAPE_CLASSES))), random_colour(rng),
                             rng.uniform(0, s, 2), speed(), s * rng.uniform(0.1, 0.3), s * rng.uniform(0.1, 0.3),
                             wobble=rng.uniform(0, s * 0.08, 2)))
    distractor = rng.random() < spec.p_distractor
    if distractor:
        movers.append(_mover(rng, s, target_cls, _similar_colour(rng, target_colour), rng.uniform(0, s, 2),
                             speed(), size0 * rng.uniform(0.8, 1.2), size0 * rng.uniform(0.8, 1.2),
                             wobble=rng.uniform(0, s * 0.08, 2)))
    if spec.bounce:
        for m in movers:
            m.bounds = float(s)
    occluder = rng.random() < spec.p_occluder
    # depth: index 0 drawn first. The target is behind an occluder crossing its path mid-clip; other objects
    # take random depths, but none covers the target on frame 0
    order = list(rng.permutation(len(movers)))
    if occluder:
        mid = length // 2
        tx, ty, _ = target.at(mid, length)
        side = rng.choice([-1.0, 1.0])
        begin = np.array([tx - side * s * 0.6, ty + rng.uniform(-0.1, 0.1) * s], np.float32)
        vel = (np.array([tx, ty], np.float32) - begin) / mid
        movers.append(_mover(rng, s, int(rng.integers(0, len(SHAPE_CLASSES))), random_colour(rng), begin, vel,
                             size0 * 1.1, size0 * 1.1))
        order.append(len(movers) - 1)  # in front of everything

    frames = np.empty((length, s, s, 3), np.uint8)
    masks = np.zeros((length, len(movers), s, s), bool)
    for t in range(length):
        img = background.copy()
        drawn = np.zeros((len(movers), s, s), bool)
        for k in order:
            m = movers[k]
            cx, cy, size = m.at(t, length)
            shape = shape_mask(np.random.default_rng(m.shape_seed), m.cls, s, s, cx, cy, size)
            img[shape] = m.fill[shape]
            drawn[k] = shape
            drawn[[j for j in range(len(movers)) if j != k]] &= ~shape  # hidden behind it
        frames[t] = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
        masks[t] = drawn
    # the target must be whole and visible where it is prompted
    whole = shape_mask(np.random.default_rng(target.shape_seed), target.cls, s, s, *target.at(0, length))
    if masks[0, 0].sum() < 0.97 * whole.sum() or masks[0, 0].sum() < 30:
        return render_clip(seed + 1_000_003, spec)  # re-draw: another seed, deterministic
    return Clip(frames, masks, np.array([m.cls for m in movers]),
                {"occluder": occluder, "leaves": leaves, "distractor": distractor})


def clip_seeds(split: str, count: int) -> list[int]:
    """Disjoint seeds: "train" from 0, "val" from 10**7, "eval" from 2 * 10**7."""
    base = {"train": 0, "val": 10**7, "eval": 2 * 10**7}
    if split not in base:
        raise ValueError(f"split {split!r}: use one of {', '.join(base)}")
    return [base[split] + i for i in range(count)]
