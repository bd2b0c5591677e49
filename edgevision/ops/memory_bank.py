"""SAM 2's per-object memory, in NumPy on the CPU, with fixed-capacity outputs for static graphs.

What a frame attends to (facebookresearch/sam2, ``SAM2Base._prepare_memory_conditioned_features``):

* every conditioning (prompted) frame's memory, at temporal slot ``num_maskmem - 1``; here at most
  ``max_cond_frames`` of them, the oldest replaced (SAM 2 attends to all of them, so results differ from it
  only once an object has been prompted on more than ``max_cond_frames`` frames);
* the memories of the ``num_maskmem - 1`` frames just before, the frame ``t`` back at slot ``t - 1``;
* object pointers: those of the conditioning frames in the past and of the ``max_ptrs - 1`` frames just
  before, each with its signed frame distance divided by the largest possible one.

``gather`` always returns the same shapes: empty slots are zeros with a validity flag of 0, which the memory
attention masks. (Zero padding without that mask would still take part in the softmax.) Memory features are
stored as bfloat16, as the official video predictor stores them, which also halves the bank.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> the uint16 bits of the nearest bfloat16 (ties to even), as ``torch.Tensor.bfloat16``."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


class MemoryBank:
    """One object's memory. ``add`` each frame's result; ``gather`` the fixed-shape inputs of the memory
    attention for the next frame.

    Shapes: M = max_cond_frames + num_maskmem - 1 memory slots of ``feature_shape`` (C_mem, g, g);
    P = max_cond_frames + max_ptrs - 1 object pointers of ``ptr_dim``.
    """

    def __init__(self, feature_shape: tuple[int, ...], ptr_dim: int, num_maskmem: int = 7,
                 max_cond_frames: int = 4, max_ptrs: int = 16, bfloat16: bool = True) -> None:
        if num_maskmem < 1 or max_cond_frames < 1 or max_ptrs < 1:
            raise ValueError(f"num_maskmem {num_maskmem}, max_cond_frames {max_cond_frames} and max_ptrs "
                             f"{max_ptrs} must all be at least 1")
        self.feature_shape, self.ptr_dim = tuple(feature_shape), ptr_dim
        self.num_maskmem, self.max_cond_frames, self.max_ptrs = num_maskmem, max_cond_frames, max_ptrs
        self.bfloat16 = bfloat16
        self.cond: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.recent: OrderedDict[int, tuple[np.ndarray | None, np.ndarray]] = OrderedDict()

    @property
    def num_slots(self) -> int:
        return self.max_cond_frames + self.num_maskmem - 1

    @property
    def num_ptr_slots(self) -> int:
        return self.max_cond_frames + self.max_ptrs - 1

    def __len__(self) -> int:
        return len(self.cond) + len(self.recent)

    def _store(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, np.float32).reshape(self.feature_shape)
        return to_bfloat16_bits(features) if self.bfloat16 else features.copy()

    def _load(self, stored: np.ndarray) -> np.ndarray:
        return from_bfloat16_bits(stored) if self.bfloat16 else stored

    def add(self, frame: int, features: np.ndarray, ptr: np.ndarray, conditioning: bool = False) -> None:
        """Store a frame's memory features (C_mem, g, g) and object pointer (ptr_dim,)."""
        ptr = np.asarray(ptr, np.float32).reshape(self.ptr_dim).copy()
        if conditioning:
            self.recent.pop(frame, None)
            self.cond.pop(frame, None)
            self.cond[frame] = (self._store(features), ptr)
            while len(self.cond) > self.max_cond_frames:
                self.cond.popitem(last=False)
            return
        self.recent[frame] = (self._store(features), ptr)
        # keep features for the last num_maskmem - 1 frames and pointers for the last max_ptrs - 1
        keep = max(self.num_maskmem - 1, self.max_ptrs - 1)
        for old in [f for f in self.recent if f <= frame - max(keep, 1)]:
            del self.recent[old]
        for old in [f for f in self.recent if f <= frame - self.num_maskmem + 1 and self.recent[f][0] is not None]:
            self.recent[old] = (None, self.recent[old][1])

    def gather(self, frame: int, num_frames: int | None = None) -> dict[str, np.ndarray]:
        """The memory-attention inputs for ``frame``, each with a leading batch axis of 1:
        ``mem_features`` (1, M, C_mem, g, g), ``mem_tpos`` (1, M) int64, ``mem_valid`` (1, M),
        ``obj_ptrs`` (1, P, ptr_dim), ``ptr_tpos`` (1, P), ``ptr_valid`` (1, P).

        ``num_frames``: a video's length when known. SAM 2 then uses min(num_frames, max_ptrs) pointers and
        scales their distances by it; a stream has no length and uses ``max_ptrs``."""
        if not self.cond:
            raise ValueError("the memory has no conditioning frame: prompt the object first")
        feats = np.zeros((1, self.num_slots, *self.feature_shape), np.float32)
        tpos = np.zeros((1, self.num_slots), np.int64)
        valid = np.zeros((1, self.num_slots), np.float32)
        slot = 0
        for stored, _ in self.cond.values():
            feats[0, slot], tpos[0, slot], valid[0, slot] = self._load(stored), self.num_maskmem - 1, 1.0
            slot += 1
        for back in range(1, self.num_maskmem):
            entry = self.recent.get(frame - back)
            if entry is not None and entry[0] is not None:
                feats[0, slot], tpos[0, slot], valid[0, slot] = self._load(entry[0]), back - 1, 1.0
                slot += 1
        max_ptrs = min(num_frames, self.max_ptrs) if num_frames else self.max_ptrs
        scale = float(max(max_ptrs - 1, 1))
        ptrs = np.zeros((1, self.num_ptr_slots, self.ptr_dim), np.float32)
        ptr_tpos = np.zeros((1, self.num_ptr_slots), np.float32)
        ptr_valid = np.zeros((1, self.num_ptr_slots), np.float32)
        slot = 0
        for t, (_, ptr) in self.cond.items():
            if t <= frame:  # only pointers from the past (SAM 2's only_obj_ptrs_in_the_past_for_eval)
                ptrs[0, slot], ptr_tpos[0, slot], ptr_valid[0, slot] = ptr, (frame - t) / scale, 1.0
                slot += 1
        for back in range(1, max_ptrs):
            if frame - back < 0:
                break
            entry = self.recent.get(frame - back)
            if entry is not None:
                ptrs[0, slot], ptr_tpos[0, slot], ptr_valid[0, slot] = entry[1], back / scale, 1.0
                slot += 1
        return {"mem_features": feats, "mem_tpos": tpos, "mem_valid": valid, "obj_ptrs": ptrs,
                "ptr_tpos": ptr_tpos, "ptr_valid": ptr_valid}

    def nbytes(self) -> int:
        total = 0
        for stored, ptr in list(self.cond.values()) + list(self.recent.values()):
            total += ptr.nbytes + (stored.nbytes if stored is not None else 0)
        return total


def stability_score(logits: np.ndarray, delta: float = 0.05) -> float:
    """SAM 2's mask stability: area above +delta over area above -delta (1 for an empty mask)."""
    inner, outer = int((logits > delta).sum()), int((logits > -delta).sum())
    return inner / outer if outer else 1.0


def select_mask(masks: np.ndarray, ious: np.ndarray, num_points: int, stability_thresh: float = 0.98,
                multimask_max_points: int = 1) -> tuple[int, int]:
    """Which of the decoder's 4 masks (index 0 single, 1-3 multimask) SAM 2 keeps, and whose object pointer.

    With at most ``multimask_max_points`` prompt points (0 while tracking) SAM 2 asks for the multimask output
    and keeps the best predicted IoU, pointer included. Otherwise it asks for one mask: token 0's, unless its
    stability falls below the threshold, then the best multimask; the pointer stays token 0's.
    ``masks`` (4, h, w), ``ious`` (4,) -> (mask index, pointer index)."""
    if masks.shape[0] != 4 or ious.shape[0] != 4:
        raise ValueError(f"expected 4 masks and 4 IoU predictions, got {masks.shape[0]} and {ious.shape[0]}")
    best = 1 + int(np.argmax(ious[1:]))
    if num_points <= multimask_max_points:
        return best, best
    return (0 if stability_score(masks[0]) >= stability_thresh else best), 0


def choice_margin(ious: np.ndarray, num_points: int, multimask_max_points: int = 1) -> float | None:
    """How far the kept multimask candidate's predicted IoU is ahead of the runner-up's (``select_mask``'s
    argmax rule), or None where that rule does not decide. Under about 0.01 any rounding can swap the two
    candidates, and they can be different objects: the check names such ties."""
    if num_points > multimask_max_points:
        return None
    top = np.sort(np.asarray(ious, np.float64)[1:])
    return float(top[-1] - top[-2])
