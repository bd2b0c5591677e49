"""Mobile U-Net: a MobileNetV2-style inverted-residual encoder and a light bilinear-upsampling decoder.

Encoder levels (stride 2, 4, 8, 16, 32) feed skip connections; each decoder level upsamples by 2
(bilinear), concatenates the skip of that resolution and applies a depthwise-separable conv. A 1x1 head
gives per-pixel class logits at full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True) if act else nn.Identity(),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear project; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), ConvBNAct(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class DecoderLevel(nn.Module):
    """x2 bilinear upsample, concat skip, depthwise-separable conv."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.dw = ConvBNAct(cin + cskip, cin + cskip, 3, groups=cin + cskip)
        self.pw = ConvBNAct(cin + cskip, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.pw(self.dw(torch.cat([x, skip], dim=1)))


class MobileUNet(nn.Module):
    """(N, 3, H, W) -> (N, C, H, W) logits; H and W must be multiples of 32.

    Args:
        num_classes: C, background included.
        stages: per encoder level (channels, repeats, expand); level i runs at stride 2**(i+1).
        decoder: output channels of the decoder levels, deepest first.
    """

    task = "segment"
    stride = 32

    def __init__(
        self,
        num_classes: int = 6,
        stem: int = 16,
        stages: Sequence[tuple[int, int, int]] = ((16, 1, 1), (24, 2, 6), (32, 3, 6), (64, 3, 6), (96, 2, 6)),
        decoder: Sequence[int] = (64, 48, 32, 24),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvBNAct(3, stem, 3, 2)
        self.levels = nn.ModuleList()
        cin = stem
        skips = []
        for i, (cout, repeats, expand) in enumerate(stages):
            blocks = []
            for r in range(repeats):
                blocks.append(InvertedResidual(cin, cout, 2 if (i > 0 and r == 0) else 1, expand))
                cin = cout
            self.levels.append(nn.Sequential(*blocks))
            skips.append(cout)
        # decoder goes from the deepest level back to stride 2
        self.decoder = nn.ModuleList()
        for skip_ch, cout in zip(reversed(skips[:-1]), decoder):
            self.decoder.append(DecoderLevel(cin, skip_ch, cout))
            cin = cout
        self.head = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = []
        y = self.stem(x)
        for level in self.levels:
            y = level(y)
            feats.append(y)
        y = feats[-1]
        for dec, skip in zip(self.decoder, reversed(feats[:-1])):
            y = dec(y, skip)
        y = self.head(y)
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)

    def head_spec(self, imgsz: int) -> dict:
        return {"kind": "semantic", "num_classes": self.num_classes}

