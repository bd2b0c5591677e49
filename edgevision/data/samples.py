"""Samples and eval sets, and the synthetic shape scenes every built-in task evaluates on. Imports no task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgevision.data.synthetic import SceneSpec, render_scene, scene_seeds


@dataclass
class Sample:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray | None = None  # (G, 4) xyxy pixels
    labels: np.ndarray | None = None  # (G,) class ids of the model's label list
    semantic: np.ndarray | None = None  # (H, W) uint8, 0 = background
    masks: np.ndarray | None = None  # (G, H, W) bool, each object's visible pixels (instance masks)

    @property
    def labelled(self) -> bool:
        return self.boxes is not None or self.semantic is not None or self.labels is not None


@dataclass
class EvalSet:
    description: str
    samples: Sequence[Sample]
    labelled: bool
    dropped_categories: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)


class _LazySamples(Sequence):
    """Samples rendered on access, so a 200-scene set costs no memory until it is walked."""

    def __init__(self, seeds: list[int], spec: SceneSpec, semantic: bool, instances: bool = False) -> None:
        self.seeds, self.spec, self.semantic, self.instances = seeds, spec, semantic, instances

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        scene = render_scene(self.seeds[i], self.spec)
        return Sample(f"scene-{self.seeds[i]}", scene.image, scene.boxes, scene.labels + (1 if self.semantic else 0),
                      scene.semantic() if self.semantic else None, scene.masks if self.instances else None)


def synthetic_scenes(imgsz: int, stride: int, count: int, seed: int, semantic: bool = False,
                     instances: bool = False) -> EvalSet:
    """Shape scenes at the model's input size, with boxes; with ``semantic``, per-pixel labels too, where class k
    of the scene is label k+1 (0 = background); with ``instances``, each object's visible mask."""
    spec = SceneSpec(size=(imgsz, imgsz), grid=max(1, imgsz // stride))
    samples = _LazySamples(scene_seeds(seed, count), spec, semantic=semantic, instances=instances)
    return EvalSet(f"synthetic eval set ({count} scenes, seed {seed}, {imgsz}px)", samples, labelled=True)


def synthetic_objects(imgsz: int, count: int, seed: int) -> EvalSet:
    """Classification scenes: one shape per image, large, over a textured background with clutter; the label is
    the shape's class (an index into SHAPE_CLASSES)."""
    spec = SceneSpec(size=(imgsz, imgsz), grid=1, min_objects=1, max_objects=1, min_frac=0.3, max_frac=0.8)
    samples = _LazySamples(scene_seeds(seed, count), spec, semantic=False)
    return EvalSet(f"synthetic classification set ({count} images, seed {seed}, {imgsz}px)", samples, labelled=True)
