"""Export-only wrappers, kept apart from the models, and the graphs a model exports as.

A model that is more than one graph (an image encoder and a prompt decoder, say) lists them in
``export_graphs(imgsz, preprocess)``; every other model is one graph, ``model``, with a uint8 ``image`` input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgevision.bundle import IMAGE, MODEL_GRAPH, TensorSpec


class UInt8Input(nn.Module):
    """Takes (N, H, W, 3) uint8 RGB and folds the variant's mean/std in, so devices feed raw pixels."""

    def __init__(self, model: nn.Module, preprocess) -> None:
        super().__init__()
        self.model = model
        mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / std)
        self.register_buffer("shift", -mean / std)
        self.bgr = preprocess.colour == "BGR"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        if self.bgr:
            x = x.flip(1)
        return self.model(x * self.scale + self.shift)


# rng, count -> that many feeds of a graph's inputs that no earlier graph produces (e.g. sampled prompts)
Sampler = Callable[[np.random.Generator, int], dict[str, np.ndarray]]


@dataclass
class GraphDef:
    """One graph of a model: the module to export, its named inputs (static shapes, batch 1) and outputs.

    Graphs are listed in the order they run. Calibrating a later graph feeds it what the FP32 graphs before it
    produce (inputs named like an earlier graph's output) plus what ``sample_inputs`` draws for the rest.
    """

    name: str
    module: nn.Module
    inputs: list[TensorSpec]
    outputs: list[str]
    sample_inputs: Sampler | None = None
    options: dict = field(default_factory=dict)

    def example(self) -> tuple[torch.Tensor, ...]:
        """Zero tensors of the input specs, in order: the trace inputs of the export."""
        return tuple(torch.zeros(t.shape, dtype=getattr(torch, t.dtype)) for t in self.inputs)


def image_spec(imgsz: int) -> TensorSpec:
    return TensorSpec(name=IMAGE, shape=[1, imgsz, imgsz, 3], dtype="uint8", layout="NHWC")


def model_graphs(model: nn.Module, preprocess, imgsz: int) -> list[GraphDef]:
    """The graphs ``model`` exports as: its own ``export_graphs``, or the one graph ``model``."""
    if hasattr(model, "export_graphs"):
        return list(model.export_graphs(imgsz, preprocess))
    if hasattr(model, "set_input_size"):  # e.g. a ViT's position embedding, resampled once for this size
        model.set_input_size(imgsz)
    names = list(getattr(model, "output_names", ["output"]))
    return [GraphDef(MODEL_GRAPH, UInt8Input(model, preprocess).eval(), [image_spec(imgsz)], names)]


class _Embed(nn.Module):
    """The image encoder as the decoder sees it (a student's embeddings resized to the decoder's grid)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)


class PromptDecoderGraph(nn.Module):
    """A promptable model's decoder as one graph: ``image_embeddings`` (1, C, g, g), ``point_coords``
    (1, slots, 2) and ``point_labels`` (1, slots) -> ``low_res_masks`` (1, 3, 4g, 4g) and ``iou_predictions``
    (1, 3). The dense position encoding is computed once here and stored as a constant."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            self.register_buffer("dense_pe", model.dense_pe().contiguous())

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor):
        return self.model.decode(image_embeddings, point_coords, point_labels, dense_pe=self.dense_pe)


def sample_prompts(imgsz: int, slots: int) -> Sampler:
    """Calibration prompts for a decoder: per feed, one of a foreground point, two or three points (some
    background), or a box, at random places of the network input; the rest of the slots empty."""

    def sample(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
        coords = np.full((count, slots, 2), -1.0, np.float32)
        labels = np.full((count, slots), -1.0, np.float32)
        for i in range(count):
            kind = rng.integers(3)
            if kind == 2:  # a box
                x0, y0 = rng.uniform(0, imgsz * 0.8, 2)
                w, h = rng.uniform(imgsz * 0.05, imgsz - max(x0, y0), 2)
                coords[i, :2] = [[x0, y0], [min(x0 + w, imgsz), min(y0 + h, imgsz)]]
                labels[i, :2] = [2, 3]
            else:
                n = 1 if kind == 0 else int(rng.integers(2, 4))
                coords[i, :n] = rng.uniform(0, imgsz, (n, 2))
                labels[i, :n] = [1] + [int(v) for v in rng.integers(0, 2, n - 1)]
        return {"point_coords": coords, "point_labels": labels}

    return sample


def prompt_segmentation_graphs(model: nn.Module, imgsz: int, preprocess, slots: int) -> list[GraphDef]:
    """``image_encoder`` (uint8 image -> ``image_embeddings``) and ``mask_decoder`` (embeddings + prompt
    slots -> ``low_res_masks``, ``iou_predictions``), for a model with ``set_input_size``, ``embed``,
    ``dense_pe`` and ``decode``."""
    model.set_input_size(imgsz)
    with torch.no_grad():
        emb = model.embed(torch.zeros(1, 3, imgsz, imgsz))
    _, c, g, _ = emb.shape
    encoder = UInt8Input(_Embed(model), preprocess).eval()
    embeddings = TensorSpec(name="image_embeddings", shape=[1, c, g, g], dtype="float32")
    coords = TensorSpec(name="point_coords", shape=[1, slots, 2], dtype="float32")
    labels = TensorSpec(name="point_labels", shape=[1, slots], dtype="float32")
    return [GraphDef("image_encoder", encoder, [image_spec(imgsz)], ["image_embeddings"]),
            GraphDef("mask_decoder", PromptDecoderGraph(model).eval(), [embeddings, coords, labels],
                     ["low_res_masks", "iou_predictions"], sample_inputs=sample_prompts(imgsz, slots))]


# ------------------------------------------------------------------------------------------ SAM 2 tracker graphs
class _TrackerImageEncoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        features, feat0, feat1 = self.model.encode_image(images)
        if feat0 is None:
            return features, self.model.without_memory(features)
        return features, self.model.without_memory(features), feat0, feat1


class _TrackerMemoryAttention(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, vision_features, mem_features, mem_tpos, mem_valid, obj_ptrs, ptr_tpos, ptr_valid):
        return self.model.condition(vision_features, mem_features, mem_tpos, mem_valid, obj_ptrs, ptr_tpos,
                                    ptr_valid)


class _TrackerDecoder(nn.Module):
    """The dense position encoding is computed once here and stored as a constant (as ``PromptDecoderGraph``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            self.register_buffer("dense_pe", model.dense_pe().contiguous())

    def forward(self, image_embeddings, *rest):
        """``rest``: high_res_feat0, high_res_feat1 (a model with high-res features), point_coords, point_labels,
        mask_prompt, mask_weight."""
        skips = rest[:-4] or (None, None)
        return self.model.decode(image_embeddings, *skips, *rest[-4:], dense_pe=self.dense_pe)


class _TrackerMemoryEncoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, vision_features, mask_logits, binarize, object_score_logits):
        return self.model.encode_memory(vision_features, mask_logits, binarize, object_score_logits)


def tracker_graphs(model: nn.Module, imgsz: int, preprocess, *, prompt_slots: int = 8, max_cond_frames: int = 4,
                   max_ptrs: int = 16) -> list[GraphDef]:
    """SAM 2's four tracker graphs (``edgevision.tracker``), every shape static: the memory attention takes
    ``max_cond_frames + num_maskmem - 1`` memory slots and ``max_cond_frames + max_ptrs - 1`` object pointers,
    empty ones flagged invalid."""
    model.set_input_size(imgsz)
    g, c, cm, gm = imgsz // 16, model.dim, model.mem_dim, model.memory_grid
    slots, ptrs = max_cond_frames + model.num_maskmem - 1, max_cond_frames + max_ptrs - 1

    def f32(name: str, *shape: int) -> TensorSpec:
        return TensorSpec(name=name, shape=[1, *shape], dtype="float32")

    features = f32("vision_features", c, g, g)
    skips = [f32("high_res_feat0", c // 8, 4 * g, 4 * g), f32("high_res_feat1", c // 4, 2 * g, 2 * g)] \
        if model.high_res_features else []
    return [
        GraphDef("image_encoder", UInt8Input(_TrackerImageEncoder(model), preprocess).eval(), [image_spec(imgsz)],
                 ["vision_features", "no_memory_features", *(t.name for t in skips)]),
        GraphDef("memory_attention", _TrackerMemoryAttention(model).eval(),
                 [features, f32("mem_features", slots, cm, gm, gm),
                  TensorSpec(name="mem_tpos", shape=[1, slots], dtype="int64"), f32("mem_valid", slots),
                  f32("obj_ptrs", ptrs, c), f32("ptr_tpos", ptrs), f32("ptr_valid", ptrs)],
                 ["conditioned_features"]),
        GraphDef("mask_decoder", _TrackerDecoder(model).eval(),
                 [f32("image_embeddings", c, g, g), *skips, f32("point_coords", prompt_slots, 2),
                  f32("point_labels", prompt_slots), f32("mask_prompt", 1, imgsz, imgsz), f32("mask_weight", 1)],
                 ["low_res_masks", "iou_predictions", "obj_ptrs", "object_score_logits"]),
        GraphDef("memory_encoder", _TrackerMemoryEncoder(model).eval(),
                 [features, f32("mask_logits", 1, 4 * g, 4 * g), f32("binarize", 1), f32("object_score_logits", 1)],
                 ["memory_features"]),
    ]
