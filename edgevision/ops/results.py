"""What postprocessors return, in source-image pixels. Plain NumPy containers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def to_json(self, labels: list[str] | tuple[str, ...] = ()) -> list[dict]:
        return [
            {"box": [round(float(v), 2) for v in b], "score": round(float(s), 4), "class_id": int(c),
             **({"label": labels[int(c)]} if int(c) < len(labels) else {})}
            for b, s, c in zip(self.boxes, self.scores, self.class_ids)
        ]


@dataclass
class Segmentation:
    label_map: np.ndarray  # (H, W) uint8 class index per pixel, 0 = background
    confidence: np.ndarray | None = None  # (H, W) float32 probability of the chosen class

    def to_json(self, labels: list[str] | tuple[str, ...] = ()) -> dict:
        counts = np.bincount(self.label_map.ravel(), minlength=max(len(labels), 1))
        total = self.label_map.size
        return {"pixels": {(labels[i] if i < len(labels) else str(i)): round(int(c) / total, 4)
                           for i, c in enumerate(counts) if c}}


@dataclass
class Classification:
    class_ids: np.ndarray  # (K,) int64, the top K classes, best first
    scores: np.ndarray  # (K,) float32 softmax probabilities of those classes
    probs: np.ndarray | None = None  # (C,) float32 softmax over every class (agreement: KL divergence)

    def to_json(self, labels: list[str] | tuple[str, ...] = ()) -> list[dict]:
        return [{"label": labels[int(c)] if int(c) < len(labels) else str(int(c)), "score": round(float(s), 4)}
                for c, s in zip(self.class_ids, self.scores)]


@dataclass
class PromptMasks:
    """One mask per prompt, in source pixels: each the decoder's multimask output with the highest predicted
    IoU (or the only one asked for)."""

    masks: np.ndarray  # (K, H, W) bool
    scores: np.ndarray  # (K,) float32 predicted IoU of each chosen mask
    prompts: list  # (K,) ops.prompts.Prompt, in source pixels
    iou_predictions: np.ndarray | None = None  # (K, 3) float32 every multimask output's predicted IoU

    def __len__(self) -> int:
        return len(self.scores)

    def boxes(self) -> list[tuple[float, float, float, float] | None]:
        from edgevision.ops.prompts import mask_box

        return [mask_box(m) for m in self.masks]

    def to_json(self, labels: list[str] | tuple[str, ...] = ()) -> list[dict]:
        out = []
        for i, (mask, score, prompt, box) in enumerate(zip(self.masks, self.scores, self.prompts, self.boxes())):
            out.append({"index": i, "kind": prompt.kind, "prompt": prompt.to_json(),
                        "area": int(np.count_nonzero(mask)), "box": None if box is None else [round(v, 1) for v in box],
                        "score": round(float(score), 4)})
        return out


@dataclass
class ObjectResult:
    """One tracked object on one frame: ``mask`` (H, W) bool at frame size, the decoder's low-res logits of the
    kept mask (4g, 4g), the object score logit (> 0: present) and the object pointer (C,); ``choice_margin``:
    how narrowly the kept mask won among the decoder's candidates (``ops.memory_bank.choice_margin``)."""

    obj_id: int
    mask: np.ndarray
    low_res_logits: np.ndarray
    score: float
    obj_ptr: np.ndarray
    choice_margin: float | None = None

    @property
    def present(self) -> bool:
        return self.score > 0

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def box(self) -> tuple[int, int, int, int] | None:
        """xyxy extent of the mask in pixels, None when empty."""
        ys = np.flatnonzero(self.mask.any(1))
        if not ys.size:
            return None
        xs = np.flatnonzero(self.mask.any(0))
        return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1

    def to_json(self) -> dict:
        return {"id": int(self.obj_id), "area": self.area, "box": None if self.box() is None else list(self.box()),
                "score": round(float(self.score), 4), "present": bool(self.present)}


@dataclass
class TrackedObjects:
    """Every tracked object on one frame, in the order they were first prompted."""

    objects: list[ObjectResult]
    frame_index: int = -1

    def __len__(self) -> int:
        return len(self.objects)

    def by_id(self) -> dict[int, ObjectResult]:
        return {o.obj_id: o for o in self.objects}

    def to_json(self, labels: list[str] | tuple[str, ...] = ()) -> list[dict]:
        return [o.to_json() for o in self.objects]
