"""Export-only wrappers, kept apart from the models."""

from __future__ import annotations

import torch
from torch import nn


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
