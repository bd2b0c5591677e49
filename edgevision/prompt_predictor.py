"""Promptable segmentation on the device, SAM style, with no PyTorch: encode an image once, then ask for masks.

    from edgevision import PromptPredictor
    p = PromptPredictor("bundles/efficient-sam-demo-cpu-int8")
    p.set_image(rgb)                                      # runs image_encoder once, keeps the embedding
    masks, scores = p.predict(points=[(x, y)], labels=[1])  # runs mask_decoder only

Points and boxes are in source-image pixels; the bundle's preprocess (a plain resize for SAM models) maps them to
the network input. ``PromptStage`` runs fixed prompts, or a detector's boxes, on every frame of ``edgevision run``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from edgevision.bundle import Bundle, load_bundle
from edgevision.errors import BadInput
from edgevision.ops.preprocess import Geometry, prepare
from edgevision.ops.prompts import Prompt, choose_mask, encode_prompt, logits_to_source, make_prompt, mask_to_source
from edgevision.ops.results import Detections, PromptMasks
from edgevision.runtime.base import Runner, open_runner

ENCODER, DECODER = "image_encoder", "mask_decoder"


class PromptPredictor:
    """``set_image`` then any number of ``predict`` calls, each running only the decoder.

    ``threshold`` is the logit above which a pixel is in the mask (0, as SAM)."""

    def __init__(self, bundle: Bundle | str | os.PathLike, *, runtime: str | None = None,
                 threads: int | None = None, runner: Runner | None = None, threshold: float = 0.0) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        meta = self.bundle.meta
        if meta.head.get("kind") != "prompt-masks" or {ENCODER, DECODER} - set(meta.graphs):
            raise BadInput(f"{self.bundle.path}: a {meta.task} bundle ({meta.model}); PromptPredictor needs a "
                           f"promptable segmentation bundle (graphs {ENCODER} and {DECODER})")
        self.runner = runner or open_runner(self.bundle, runtime, threads)
        self.imgsz = meta.imgsz
        self.slots = int(meta.head["prompt_slots"])
        self.threshold = threshold
        self.labels = meta.labels
        self._embedding: np.ndarray | None = None
        self._geometry: Geometry | None = None

    # ------------------------------------------------------------------------------------------- the image
    def set_image(self, image_rgb: np.ndarray) -> None:
        """(H, W, 3) uint8 RGB: runs the image encoder and keeps its embedding for the following predicts."""
        net, geometry = prepare(image_rgb, self.imgsz, self.bundle.meta.preprocess.resize)
        self._embedding = self.runner.run(ENCODER, {"image": net[None]})["image_embeddings"]
        self._geometry = geometry

    def reset_image(self) -> None:
        self._embedding = self._geometry = None

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image given to ``set_image``."""
        g = self._require_image()
        return g.src_w, g.src_h

    def _require_image(self) -> Geometry:
        if self._geometry is None:
            raise RuntimeError("no image set: call set_image(rgb) before predict")
        return self._geometry

    # ------------------------------------------------------------------------------------------- prompts
    def prompt(self, points: Sequence[Sequence[float]] = (), labels: Sequence[int] | None = None,
               box: Sequence[float] | None = None) -> Prompt:
        """A Prompt validated against the current image and the decoder's slots (ValueError naming the value)."""
        return make_prompt(points, labels, box, size=self.image_size, slots=self.slots)

    def decode(self, prompt: Prompt) -> tuple[np.ndarray, np.ndarray]:
        """One prompt through the decoder -> its low-resolution mask logits (3, m, m) and IoU predictions (3,)."""
        geometry = self._require_image()
        coords, labels = encode_prompt(prompt, geometry, self.slots)
        out = self.runner.run(DECODER, {"image_embeddings": self._embedding, "point_coords": coords,
                                        "point_labels": labels})
        return out["low_res_masks"][0], out["iou_predictions"][0]

    def predict(self, points: Sequence[Sequence[float]] | None = None, labels: Sequence[int] | None = None,
                box: Sequence[float] | None = None, multimask: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Masks for one prompt, in source pixels.

        ``points`` (N, 2) x, y with ``labels`` (N,) 1 foreground / 0 background (all foreground if omitted);
        ``box`` x0, y0, x1, y1. With ``multimask`` -> masks (3, H, W) bool and scores (3,) predicted IoU, as
        SAM returns them; without -> (1, H, W) and (1,), the output with the highest predicted IoU (the exported
        decoder has only the multimask outputs; SAM users pick this way). ``return_logits`` gives float logits at
        the source size instead of bool masks."""
        prompt = self.prompt(() if points is None else points, labels, box)
        low, iou = self.decode(prompt)
        geometry = self._require_image()
        picks = list(range(len(iou))) if multimask else [choose_mask(iou)]
        if return_logits:
            masks = [logits_to_source(low[j], geometry, self.imgsz) for j in picks]
        else:
            masks = [mask_to_source(low[j], geometry, self.imgsz, self.threshold) for j in picks]
        return np.stack(masks), iou[picks].astype(np.float32)

    def predict_prompts(self, prompts: Sequence[Prompt]) -> PromptMasks:
        """Several prompts on the current image -> PromptMasks, each the output with the highest predicted IoU."""
        geometry = self._require_image()
        masks, scores, ious = [], [], []
        for prompt in prompts:
            low, iou = self.decode(prompt)
            j = choose_mask(iou)
            masks.append(mask_to_source(low[j], geometry, self.imgsz, self.threshold))
            scores.append(iou[j])
            ious.append(iou)
        if not masks:
            return PromptMasks(np.zeros((0, geometry.src_h, geometry.src_w), bool), np.zeros(0, np.float32), [],
                               np.zeros((0, 3), np.float32))
        return PromptMasks(np.stack(masks), np.asarray(scores, np.float32), list(prompts),
                           np.stack(ious).astype(np.float32))

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> PromptPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PromptStage:
    """``edgevision run`` on a promptable bundle: every frame is encoded once and decoded once per prompt.

    The prompts are fixed (``--point``/``--box``, checked against each frame's size), or come from an upstream
    detector in a Chain (``--prompts-from``): each detection box becomes a box prompt on the same frame, up to
    ``max_prompts`` (the highest scores)."""

    stateful = True

    def __init__(self, predictor: PromptPredictor, prompts: Sequence[Prompt] = (), max_prompts: int = 16) -> None:
        self.predictor = predictor
        self.runner = predictor.runner
        self.prompts = list(prompts)
        self.max_prompts = max_prompts
        self.labels = predictor.labels

    def step(self, frame_rgb: np.ndarray, upstream: Detections | None = None) -> PromptMasks:
        self.predictor.set_image(frame_rgb)
        if upstream is not None:
            prompts = detection_prompts(upstream, self.predictor.image_size, self.max_prompts)
        else:
            prompts = [self._checked(p) for p in self.prompts]
        return self.predictor.predict_prompts(prompts)

    def _checked(self, prompt: Prompt) -> Prompt:
        w, h = self.predictor.image_size
        try:
            return make_prompt(prompt.points, prompt.labels, prompt.box, size=(w, h), slots=self.predictor.slots)
        except ValueError as e:
            raise BadInput(f"a frame of {w}x{h}: {e}") from None


def detection_prompts(detections: Detections, size: tuple[int, int], limit: int) -> list[Prompt]:
    """Detection boxes (source pixels) -> box prompts, the highest scores first, clipped to the image; boxes
    thinner than a pixel are skipped."""
    w, h = size
    order = np.argsort(-detections.scores, kind="stable")[:limit]
    prompts = []
    for i in order:
        x0, y0, x1, y1 = np.clip(detections.boxes[i], 0, [w, h, w, h]).tolist()
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            prompts.append(Prompt(box=(x0, y0, x1, y1)))
    return prompts
