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
