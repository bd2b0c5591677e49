"""Streaming video object tracking, SAM 2 style, with no PyTorch: four graphs and a memory bank per object.

```python
t = Tracker("bundles/sam-track-demo-cpu-int8")            # or Tracker(graphs, img_size=..., feature_shape=...)
t.add_prompt(frame_rgb, obj_id=1, box=(x0, y0, x1, y1))   # or points=[(x, y)], labels=[1]
for frame in frames:
    result = t.track(frame)   # per object: mask, score, present
t.remove(1); t.reset()
```

A bundle (its directory, archive or ``Bundle``) brings its graphs, input size and memory capacity. Otherwise
``graphs`` maps the four graph names to callables taking and returning dicts of NumPy arrays (a runner's
graphs, or ``edgevision.models.sam2.torch_graphs`` for the PyTorch model):

* ``image_encoder``: ``image`` (1, S, S, 3) uint8 -> ``vision_features`` (1, C, g, g), ``no_memory_features``
  (the same plus SAM 2's no-memory embedding), and for a Hiera encoder ``high_res_feat0``, ``high_res_feat1``;
* ``memory_attention``: ``vision_features`` and ``MemoryBank.gather``'s arrays -> ``conditioned_features``;
* ``mask_decoder``: features, the skip features, ``point_coords`` (1, K, 2) in input pixels,
  ``point_labels`` (1, K), ``mask_prompt`` (1, 1, S, S) and ``mask_weight`` (1, 1) (1 for a mask prompt) ->
  ``low_res_masks`` (1, 4, 4g, 4g), ``iou_predictions`` (1, 4), ``obj_ptrs`` (1, 4, C) and
  ``object_score_logits`` (1, 1);
* ``memory_encoder``: ``vision_features``, ``mask_logits`` (1, 1, 4g, 4g), ``binarize`` (1, 1) and
  ``object_score_logits`` -> ``memory_features`` (1, C_mem, g, g).

Every object shares one image encoding per frame. An object whose score is negative is absent (it may come
back: its memory keeps the frames it was absent in, as SAM 2's does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgevision.bundle import Bundle, load_bundle
from edgevision.errors import BadInput
from edgevision.ops.memory_bank import MemoryBank, choice_margin, select_mask
from edgevision.ops.results import ObjectResult, TrackedObjects
from edgevision.runtime.base import open_runner

log = logging.getLogger(__name__)

GRAPH_NAMES = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
PAD_LABEL, UNUSED_SLOT = -1, -2  # SAM 2's padding token; a spare slot the decoder masks out
BOX_LABELS = (2, 3)

Graph = Callable[[dict], dict]


def head_capacity(head: Mapping) -> dict:
    """The Tracker arguments a tracker bundle's head records (its graphs' static shapes)."""
    return {"feature_shape": tuple(int(v) for v in head["memory_shape"]), "ptr_dim": int(head["ptr_dim"]),
            "num_maskmem": int(head["num_maskmem"]), "max_cond_frames": int(head["max_cond_frames"]),
            "max_ptrs": int(head["max_ptrs"]), "prompt_slots": int(head["prompt_slots"])}


def runner_graphs(runner) -> dict[str, Graph]:
    """A runner's four tracker graphs as callables."""
    return {name: (lambda feeds, name=name: runner.run(name, feeds)) for name in GRAPH_NAMES}


@dataclass
class _Track:
    bank: MemoryBank
    prompted: set[int] = field(default_factory=set)


class Tracker:
    """Tracks prompted objects through a stream of RGB frames (H, W, 3) uint8."""

    def __init__(self, graphs: Mapping[str, Graph] | Bundle | str | os.PathLike, img_size: int | None = None, *,
                 feature_shape: tuple[int, int, int] | None = None, ptr_dim: int = 256, num_maskmem: int = 7,
                 max_cond_frames: int = 4, max_ptrs: int = 16, prompt_slots: int = 8, num_frames: int | None = None,
                 mask_threshold: float = 0.0, runtime: str | None = None, threads: int | None = None) -> None:
        self.runner = None
        if not isinstance(graphs, Mapping):
            bundle = graphs if isinstance(graphs, Bundle) else load_bundle(graphs)
            head = bundle.meta.head
            if head.get("kind") != "tracker":
                raise BadInput(f"{bundle.path}: a {bundle.meta.task} bundle ({bundle.meta.model}); a Tracker needs a "
                               f"tracker bundle (graphs {', '.join(GRAPH_NAMES)})")
            self.runner = open_runner(bundle, runtime, threads)
            graphs, img_size = runner_graphs(self.runner), bundle.meta.imgsz
            capacity = head_capacity(head)
            feature_shape, ptr_dim = capacity["feature_shape"], capacity["ptr_dim"]
            num_maskmem, max_cond_frames = capacity["num_maskmem"], capacity["max_cond_frames"]
            max_ptrs, prompt_slots = capacity["max_ptrs"], capacity["prompt_slots"]
        elif img_size is None or feature_shape is None:
            raise TypeError("Tracker(graphs, ...) needs img_size and feature_shape (a bundle brings its own)")
        missing = [name for name in GRAPH_NAMES if name not in graphs]
        if missing:
            raise BadInput(f"a tracker needs the graphs {', '.join(GRAPH_NAMES)}; missing {', '.join(missing)}")
        self.graphs, self.img_size = graphs, img_size
        self.feature_shape, self.ptr_dim = tuple(feature_shape), ptr_dim
        self.bank_args = {"num_maskmem": num_maskmem, "max_cond_frames": max_cond_frames, "max_ptrs": max_ptrs}
        self.prompt_slots, self.num_frames, self.mask_threshold = prompt_slots, num_frames, mask_threshold
        self.tracks: dict[int, _Track] = {}
        self._no_mask = np.zeros((1, 1, img_size, img_size), np.float32)
        self.reset()

    @classmethod
    def from_graphs(cls, graphs: Mapping[str, Graph], head: Mapping, img_size: int, **options) -> Tracker:
        """A tracker of graph callables with the capacity a bundle's ``head`` records."""
        return cls(graphs, img_size, **head_capacity(head), **options)

    @classmethod
    def from_runner(cls, runner, head: Mapping, img_size: int, **options) -> Tracker:
        """A tracker of a runner's graphs (a bundle's, or the PyTorch reference's)."""
        return cls.from_graphs(runner_graphs(runner), head, img_size, **options)

    @property
    def max_prompt_points(self) -> int:
        """Points a prompt may have (a box counts as two): SAM 2 adds one padding token to a prompt."""
        return self.prompt_slots - 1

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every object and frame."""
        self.tracks.clear()
        self.frame_idx = -1
        self.frame_size: tuple[int, int] | None = None
        self._frame: np.ndarray | None = None
        self._features: dict[str, np.ndarray] | None = None

    def remove(self, obj_id: int) -> None:
        if obj_id not in self.tracks:
            raise BadInput(f"no object {obj_id} is tracked (tracked: {sorted(self.tracks) or 'none'})")
        del self.tracks[obj_id]

    @property
    def object_ids(self) -> list[int]:
        return list(self.tracks)

    # ------------------------------------------------------------------------------------------- frames
    def _new_frame(self, frame: np.ndarray) -> None:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise BadInput(f"a frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        size = frame.shape[:2]
        if self.frame_size is not None and size != self.frame_size:
            log.warning("frame size changed from %s to %s: the tracker was reset", self.frame_size, size)
            self.reset()
        self.frame_size = size
        self.frame_idx += 1
        image = frame if size == (self.img_size, self.img_size) else \
            cv2.resize(frame, (self.img_size, self.img_size), interpolation=cv2.INTER_LINEAR)
        self._frame = frame
        self._features = self.graphs["image_encoder"]({"image": np.ascontiguousarray(image[None])})

    def _is_current(self, frame: np.ndarray) -> bool:
        cur = self._frame
        return cur is not None and (frame is cur or (frame.shape == cur.shape and np.array_equal(frame, cur)))

    def _to_input(self, xy: np.ndarray) -> np.ndarray:
        h, w = self.frame_size
        return xy * np.array([self.img_size / w, self.img_size / h], np.float32)

    # ------------------------------------------------------------------------------------------- prompts
    def add_prompt(self, frame: np.ndarray, obj_id: int, *, box: Sequence[float] | None = None,
                   points: Sequence[Sequence[float]] | None = None, labels: Sequence[int] | None = None,
                   mask: np.ndarray | None = None) -> ObjectResult:
        """Prompt ``obj_id`` (new or tracked) on ``frame``: the frame last tracked, or else the next frame (the
        other objects are tracked on it first). ``box`` (x0, y0, x1, y1) and/or ``points`` (x, y) in frame pixels
        with ``labels`` (1 foreground, 0 background; default all 1); or ``mask`` (H, W) bool at frame size, which
        becomes the object's mask on that frame as given (SAM 2's ``add_new_mask``). Returns the object's mask on
        that frame."""
        frame = np.asarray(frame)
        if mask is not None and (box is not None or points is not None):
            raise BadInput("give a mask prompt alone, or a box and/or points (SAM 2 does not combine them)")
        if not self._is_current(frame):
            self.track(frame)
        if mask is not None:
            mask = self._prompt_mask(mask)
        else:
            coords, point_labels = self._prompt_points(box, points, labels)
        track = self.tracks.get(obj_id)
        if track is None:
            track = self.tracks[obj_id] = _Track(MemoryBank(self.feature_shape, self.ptr_dim, **self.bank_args))
        track.prompted.add(self.frame_idx)
        if mask is not None:
            return self._mask_step(obj_id, track, mask)
        return self._step(obj_id, track, coords, point_labels)

    def _prompt_mask(self, mask) -> np.ndarray:
        """A mask prompt at frame size -> (S, S) float32 in {0, 1} at the network input (area-resized, >= 0.5, as
        SAM 2 resizes it with antialiasing)."""
        mask = np.asarray(mask)
        if mask.shape != self.frame_size:
            h, w = self.frame_size
            raise BadInput(f"a mask prompt must be the frame's size {w}x{h}, got {mask.shape[1::-1] if mask.ndim == 2 else mask.shape}")
        if not mask.any():
            raise BadInput("the mask prompt is empty; mark the object's pixels (nonzero)")
        net = cv2.resize((mask > 0).astype(np.float32), (self.img_size, self.img_size), interpolation=cv2.INTER_AREA)
        return (net >= 0.5).astype(np.float32)

    def _mask_step(self, obj_id: int, track: _Track, mask: np.ndarray) -> ObjectResult:
        """SAM 2's mask as output: the prompt's mask is the frame's result (logits +-10, downsampled to the
        decoder's resolution); the decoder runs with it as its mask input only for the object pointer (token 0);
        the memory encoder encodes the mask itself."""
        feats = self._features
        low = self.img_size // 4
        logits = cv2.resize(mask * 20.0 - 10.0, (low, low), interpolation=cv2.INTER_AREA).astype(np.float32)
        slot_coords, slot_labels = self._decoder_prompt(np.zeros((0, 2), np.float32), np.zeros(0, np.float32))
        skips = {k: v for k, v in feats.items() if k.startswith("high_res_feat")}
        out = self.graphs["mask_decoder"]({"image_embeddings": feats["no_memory_features"], **skips,
                                           "point_coords": slot_coords, "point_labels": slot_labels,
                                           "mask_prompt": mask[None, None], "mask_weight": np.ones((1, 1), np.float32)})
        score = np.full((1, 1), 10.0, np.float32)  # SAM 2: 20 x (mask not empty) - 10
        memory_features = self.graphs["memory_encoder"]({
            "vision_features": feats["vision_features"], "mask_logits": logits[None, None],
            "binarize": np.ones((1, 1), np.float32), "object_score_logits": score})["memory_features"]
        ptr = out["obj_ptrs"][0, 0]
        track.bank.add(self.frame_idx, memory_features[0], ptr, conditioning=True)
        h, w = self.frame_size
        full = cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR) > self.mask_threshold
        return ObjectResult(obj_id, full, logits, float(score[0, 0]), ptr)

    def _prompt_points(self, box, points, labels) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.frame_size
        coords, kinds = [], []
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise BadInput(f"box {x0:g},{y0:g},{x1:g},{y1:g} is not inside the {w}x{h} frame with x0 < x1 "
                               f"and y0 < y1")
            coords += [(x0, y0), (x1, y1)]
            kinds += list(BOX_LABELS)
        if points is not None:
            points = [tuple(float(v) for v in p) for p in points]
            labels = [1] * len(points) if labels is None else [int(v) for v in labels]
            if len(labels) != len(points):
                raise BadInput(f"{len(points)} points but {len(labels)} labels")
            for (x, y), label in zip(points, labels):
                if not (0 <= x < w and 0 <= y < h):
                    raise BadInput(f"point {x:g},{y:g} is outside the {w}x{h} frame")
                if label not in (0, 1):
                    raise BadInput(f"point label {label}: use 1 (foreground) or 0 (background)")
            coords += points
            kinds += labels
        if not coords:
            raise BadInput("a prompt needs a box or at least one point")
        if len(coords) + 1 > self.prompt_slots:
            raise BadInput(f"{len(coords)} prompt points; this tracker's decoder takes at most "
                           f"{self.prompt_slots - 1}")
        return self._to_input(np.array(coords, np.float32)), np.array(kinds, np.float32)

    def _decoder_prompt(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SAM 2's token layout in the fixed slots: the points, one padding token (two with no points), then
        masked spare slots."""
        pads = 1 if len(coords) else 2
        slots_coords = np.zeros((1, self.prompt_slots, 2), np.float32)
        slots_labels = np.full((1, self.prompt_slots), UNUSED_SLOT, np.float32)
        slots_coords[0, : len(coords)] = coords
        slots_labels[0, : len(labels)] = labels
        slots_labels[0, len(labels): len(labels) + pads] = PAD_LABEL
        return slots_coords, slots_labels

    # ------------------------------------------------------------------------------------------- tracking
    def track(self, frame: np.ndarray) -> dict[int, ObjectResult]:
        """Advance to ``frame`` and track every object on it."""
        self._new_frame(np.asarray(frame))
        return {obj_id: self._step(obj_id, track) for obj_id, track in self.tracks.items()}

    def _step(self, obj_id: int, track: _Track, coords: np.ndarray | None = None,
              labels: np.ndarray | None = None) -> ObjectResult:
        feats = self._features
        prompted = coords is not None
        if prompted:
            features = feats["no_memory_features"]
        else:
            if not track.bank.cond:
                raise BadInput(f"object {obj_id} has no prompt yet")
            memory = track.bank.gather(self.frame_idx, self.num_frames)
            features = self.graphs["memory_attention"]({"vision_features": feats["vision_features"], **memory})[
                "conditioned_features"]
            coords, labels = np.zeros((0, 2), np.float32), np.zeros((0,), np.float32)
        slot_coords, slot_labels = self._decoder_prompt(coords, labels)
        skips = {k: v for k, v in feats.items() if k.startswith("high_res_feat")}  # none from a one-scale encoder
        out = self.graphs["mask_decoder"]({"image_embeddings": features, **skips, "point_coords": slot_coords,
                                           "point_labels": slot_labels, "mask_prompt": self._no_mask,
                                           "mask_weight": np.zeros((1, 1), np.float32)})
        masks, ious = out["low_res_masks"][0], out["iou_predictions"][0]
        mask_index, ptr_index = select_mask(masks, ious, num_points=len(coords))
        margin = choice_margin(ious, num_points=len(coords))
        logits = masks[mask_index]
        score = out["object_score_logits"].reshape(1, 1).astype(np.float32)
        memory_features = self.graphs["memory_encoder"]({
            "vision_features": feats["vision_features"], "mask_logits": logits[None, None].astype(np.float32),
            "binarize": np.full((1, 1), 1.0 if prompted else 0.0, np.float32), "object_score_logits": score,
        })["memory_features"]
        ptr = out["obj_ptrs"][0, ptr_index]
        track.bank.add(self.frame_idx, memory_features[0], ptr, conditioning=prompted)
        h, w = self.frame_size
        mask = cv2.resize(logits.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > self.mask_threshold
        return ObjectResult(obj_id, mask, logits, float(score[0, 0]), ptr, margin)


# ------------------------------------------------------------------------------------------------ live stage
@dataclass(frozen=True)
class TrackPrompt:
    """The prompt that starts one object: a box and/or points, in frame pixels."""

    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class TrackStage:
    """``edgevision run`` on a tracker bundle: one Tracker over the stream.

    Fixed prompts (``--box``/``--point``) start objects 1, 2, ... on frame ``prompt_frame`` of the frames that
    reach the stage (frames before it are passed through untracked). Or, behind a detector in a Chain
    (``--prompts-from``): after each frame is tracked, a detection of one of ``classes`` that overlaps no live
    track (box IoU below ``overlap``) starts a new object, up to ``max_objects`` live; a track whose object score
    stays negative for ``lost_after`` frames in a row ends. IDs are never reused."""

    stateful = True

    def __init__(self, tracker: Tracker, prompts: Sequence[TrackPrompt] = (), *, prompt_frame: int = 0,
                 max_objects: int = 8, lost_after: int = 30, classes: Sequence[int] | None = None,
                 overlap: float = 0.3, labels: Sequence[str] = ("object",)) -> None:
        self.tracker, self.runner = tracker, tracker.runner
        self.prompts, self.prompt_frame = list(prompts), prompt_frame
        self.max_objects, self.lost_after, self.overlap = max_objects, lost_after, overlap
        self.classes = None if classes is None else set(classes)
        self.labels = tuple(labels)
        self.seen = 0
        self.next_id = 1
        self.absent_for: dict[int, int] = {}

    def step(self, frame_rgb: np.ndarray, upstream=None) -> TrackedObjects:
        index = self.seen
        self.seen += 1
        if upstream is None and index < self.prompt_frame:
            return TrackedObjects([], index)
        if self.tracker.frame_size is not None and frame_rgb.shape[:2] != self.tracker.frame_size:
            self.absent_for.clear()  # the tracker resets itself (with a warning); its objects are gone
        results = self.tracker.track(frame_rgb) if self.tracker.object_ids or upstream is None else {}
        if upstream is None and index == self.prompt_frame:
            for prompt in self.prompts:
                obj_id = self._new_id()
                results[obj_id] = self._add(frame_rgb, obj_id, prompt)
        elif upstream is not None:
            self._drop_lost(results)
            for prompt in self._new_objects(upstream, results, frame_rgb.shape[:2]):
                obj_id = self._new_id()
                results[obj_id] = self._add(frame_rgb, obj_id, prompt)
        return TrackedObjects(list(results.values()), index)

    def _add(self, frame_rgb: np.ndarray, obj_id: int, prompt: TrackPrompt) -> ObjectResult:
        return self.tracker.add_prompt(frame_rgb, obj_id, box=prompt.box, points=prompt.points or None,
                                       labels=prompt.labels or None)

    def _new_id(self) -> int:
        obj_id, self.next_id = self.next_id, self.next_id + 1
        return obj_id

    def _drop_lost(self, results: dict[int, ObjectResult]) -> None:
        for obj_id, r in list(results.items()):
            self.absent_for[obj_id] = 0 if r.present else self.absent_for.get(obj_id, 0) + 1
            if self.absent_for[obj_id] >= self.lost_after:
                self.tracker.remove(obj_id)
                del self.absent_for[obj_id], results[obj_id]

    def _new_objects(self, detections, results: dict[int, ObjectResult], size: tuple[int, int]) -> list[TrackPrompt]:
        h, w = size
        live = [box for box in (r.box() for r in results.values() if r.present) if box is not None]
        room = self.max_objects - len(self.tracker.object_ids)
        out = []
        for i in np.argsort(-detections.scores, kind="stable"):
            if room <= 0:
                break
            if self.classes is not None and int(detections.class_ids[i]) not in self.classes:
                continue
            x0, y0, x1, y1 = np.clip(detections.boxes[i], 0, [w, h, w, h]).tolist()
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            box = (x0, y0, x1, y1)
            if any(box_iou(box, b) >= self.overlap for b in live):
                continue
            out.append(TrackPrompt(box=box))
            live.append(box)
            room -= 1
        return out
