"""Promptable segmentation: one mask per prompt (points and/or a box), SAM style.

The model is two graphs: ``image_encoder`` runs once per image, ``mask_decoder`` once per prompt. Evaluation
prompts every ground-truth object twice, with one point at the maximum of its mask's distance transform and
with its tight box; each side keeps the multimask output with the highest predicted IoU. Metrics, in points
(0-100): mIoU against the ground truth by prompt kind (``miou_point``, ``miou_box``); against the FP32
reference, the mean IoU of the chosen masks (``mask_iou``; two empty masks agree fully) and the mean absolute
error of the predicted IoUs (``iou_prediction_mae``, in points too). Images without ground truth (``check
--data`` on photos) are prompted with an 8 x 8 grid of points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevision.ops.preprocess import Geometry
from edgevision.ops.prompts import Prompt, choose_mask, encode_prompts, grid_prompts, make_prompt, mask_iou, \
    mask_to_source, point_inside
from edgevision.ops.results import PromptMasks
from edgevision.tasks.base import Accumulator, Task

ENCODER, DECODER = "image_encoder", "mask_decoder"
GRID = 8  # grid prompts per side on images without ground truth


def eval_prompts(sample) -> list[Prompt]:
    """Per ground-truth object, a point prompt then a box prompt; an 8 x 8 point grid without ground truth."""
    masks = getattr(sample, "masks", None)
    h, w = sample.image.shape[:2]
    if masks is None:
        return grid_prompts(w, h, GRID)
    prompts = []
    for mask in masks:
        ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        prompts.append(Prompt((point_inside(mask),), (1,)))
        prompts.append(Prompt(box=(float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))))
    return prompts


class PromptMaskPostprocessor:
    """Decoder outputs for K prompts -> PromptMasks in source pixels.

    ``outputs``: ``low_res_masks`` (K, 3, m, m) logits, ``iou_predictions`` (K, 3), and the prompts that made
    them, ``point_coords`` (K, slots, 2) in network pixels and ``point_labels`` (K, slots)."""

    def __init__(self, head: dict, imgsz: int, multimask: bool = True, threshold: float = 0.0, **_: object) -> None:
        self.imgsz = imgsz
        self.threshold = threshold
        self.masks, self.scores = head.get("masks", "low_res_masks"), head.get("scores", "iou_predictions")

    def __call__(self, outputs: dict[str, np.ndarray], geometry: Geometry | None = None) -> PromptMasks:
        low, iou = outputs[self.masks], outputs[self.scores]
        if low.ndim != 4 or iou.shape != low.shape[:2]:
            raise ValueError(f"expected (K, 3, m, m) masks and (K, 3) IoU predictions, got {low.shape} and "
                             f"{iou.shape}")
        if geometry is None:
            geometry = Geometry(1.0, 1.0, 0.0, 0.0, self.imgsz, self.imgsz)
        prompts = decode_prompts(outputs.get("point_coords"), outputs.get("point_labels"), geometry, len(low))
        picks = [choose_mask(row) for row in iou]
        masks = np.stack([mask_to_source(low[k, j], geometry, self.imgsz, self.threshold)
                          for k, j in enumerate(picks)]) if len(low) else \
            np.zeros((0, geometry.src_h, geometry.src_w), bool)
        scores = np.array([iou[k, j] for k, j in enumerate(picks)], np.float32)
        return PromptMasks(masks, scores, prompts, iou.astype(np.float32))


def decode_prompts(coords, labels, geometry: Geometry, count: int) -> list[Prompt]:
    """The decoder's prompt slots back to source-pixel Prompts (for results and reports)."""
    if coords is None or labels is None:
        return [Prompt() for _ in range(count)]
    out = []
    for c, lab in zip(coords, labels):
        src = np.stack([(c[:, 0] - geometry.pad_x) / geometry.scale_x, (c[:, 1] - geometry.pad_y) / geometry.scale_y], 1)
        points = tuple((float(x), float(y)) for (x, y), v in zip(src, lab) if v in (0, 1))
        kinds = tuple(int(v) for v in lab if v in (0, 1))
        corners = {int(v): (float(x), float(y)) for (x, y), v in zip(src, lab) if v in (2, 3)}
        box = (*corners[2], *corners[3]) if len(corners) == 2 else None
        out.append(Prompt(points, kinds, box))
    return out


class PromptMaskAccumulator(Accumulator):
    """Against ground truth (a Sample with instance masks): IoU per object and prompt kind, in the order
    ``eval_prompts`` made the prompts. Against a reference PromptMasks: IoU of the chosen masks and the error
    of the predicted IoUs."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[float]] = {}
        self.agree: list[float] = []
        self.iou_error: list[float] = []

    def add(self, truth, result: PromptMasks) -> None:
        if isinstance(truth, PromptMasks):
            self.agree += [mask_iou(a, b) for a, b in zip(truth.masks, result.masks)]
            if truth.iou_predictions is not None and result.iou_predictions is not None:
                self.iou_error.append(float(np.abs(truth.iou_predictions - result.iou_predictions).mean()))
            return
        if getattr(truth, "masks", None) is None:
            return
        prompts = eval_prompts(truth)
        for k, (prompt, mask) in enumerate(zip(prompts, result.masks)):
            self.by_kind.setdefault(prompt.kind, []).append(mask_iou(truth.masks[k // 2], mask))

    def result(self) -> dict[str, float]:
        out = {f"miou_{kind}": 100.0 * float(np.mean(v)) for kind, v in self.by_kind.items()}
        if self.by_kind:
            out["miou"] = 100.0 * float(np.mean([x for v in self.by_kind.values() for x in v]))
        if self.agree:
            out["mask_iou"] = 100.0 * float(np.mean(self.agree))
        if self.iou_error:
            out["iou_prediction_mae"] = 100.0 * float(np.mean(self.iou_error))
        return out


class PromptSegmentTask(Task):
    name = "prompt-segment"
    result_type = PromptMasks
    postprocessors = {"prompt-masks": "edgevision.tasks.prompt_segment:PromptMaskPostprocessor"}
    agreement = ("mask_iou", "mask_iou")
    agreement_extras = {"iou_prediction_mae": "iou_prediction_mae"}
    json_key = "masks"
    plot_marker = "D"
    default_recipe = "default-prompt-segment.yaml"
    graph = DECODER  # golden agreement is measured on the decoder's stored prompts

    def infer(self, runner, batch):
        raise TypeError("a promptable model needs prompts: use PromptPredictor (set_image, then predict) or "
                        "`edgevision run BUNDLE --point x,y` / `--box x0,y0,x1,y1`")

    def infer_eval(self, runner, batch, samples, geometries, head) -> list[dict[str, np.ndarray]]:
        """The encoder once per image, the decoder once per evaluation prompt; per image, the decoder outputs
        of its K prompts stacked, and the prompt slots themselves (for the postprocessor)."""
        out = []
        for i, (sample, geometry) in enumerate(zip(samples, geometries)):
            emb = runner.run(ENCODER, {"image": batch[i : i + 1]})["image_embeddings"]
            coords, labels = encode_prompts(eval_prompts(sample), geometry, head["prompt_slots"])
            if getattr(runner, "max_batch", 1) > 1:  # the PyTorch reference decodes all prompts at once
                outs = [runner.run(DECODER, {"image_embeddings": emb, "point_coords": coords, "point_labels": labels})]
            else:
                outs = [runner.run(DECODER, {"image_embeddings": emb, "point_coords": coords[k : k + 1],
                                             "point_labels": labels[k : k + 1]}) for k in range(len(coords))]
            stacked = {k: np.concatenate([o[k] for o in outs])[None] for k in outs[0]}
            out.append({**stacked, "point_coords": coords[None], "point_labels": labels[None]})
        return out

    def bench_calls(self, runner, meta, frame_rgb: np.ndarray) -> dict:
        """One image and one click: the encoder then the decoder on one point at the input size; end to end,
        ``PromptPredictor.set_image`` and ``predict`` (resize, upscaling and threshold included)."""
        from edgevision.ops.preprocess import prepare
        from edgevision.prompt_predictor import PromptPredictor

        net = np.ascontiguousarray(prepare(frame_rgb, meta.imgsz, meta.preprocess.resize)[0][None])
        slots = int(meta.head["prompt_slots"])
        coords = np.zeros((1, slots, 2), np.float32)
        coords[0, 0] = meta.imgsz / 2
        labels = np.full((1, slots), -1.0, np.float32)
        labels[0, 0] = 1.0

        def artifact():
            emb = runner.run(ENCODER, {"image": net})["image_embeddings"]
            return runner.run(DECODER, {"image_embeddings": emb, "point_coords": coords, "point_labels": labels})

        predictor = PromptPredictor(runner.bundle, runner=runner) if runner.bundle is not None else None
        h, w = frame_rgb.shape[:2]

        def end_to_end():
            predictor.set_image(frame_rgb)
            return predictor.predict(points=[(w / 2, h / 2)], labels=[1])

        return {"artifact": artifact, "end_to_end": end_to_end if predictor is not None else artifact}

    def similarity_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v for k, v in outputs.items() if k not in ("point_coords", "point_labels")}

    def accumulator(self, labels: Sequence[str], recipe) -> PromptMaskAccumulator:
        return PromptMaskAccumulator()

    def synthetic_eval_set(self, imgsz: int, stride: int, count: int, seed: int):
        """Shape scenes at the model's input size with every object's exact visible mask."""
        from edgevision.data.samples import synthetic_scenes

        return synthetic_scenes(imgsz, stride, count, seed, instances=True)

    def golden_results(self, stored, i, outputs, post):
        """Masks at the decoder's resolution for the stored prompt of sample ``i``, reference and artifact."""
        ref = {k: stored[k][i : i + 1].astype(np.float32) for k in outputs}
        return post(ref), post({k: v.astype(np.float32) for k, v in outputs.items()})

    def draw(self, frame_bgr: np.ndarray, result: PromptMasks, labels: Sequence[str]) -> np.ndarray:
        from edgevision.pipeline.render import draw_prompt_masks

        return draw_prompt_masks(frame_bgr, result)


__all__ = ["PromptMaskAccumulator", "PromptMaskPostprocessor", "PromptSegmentTask", "eval_prompts", "make_prompt"]
