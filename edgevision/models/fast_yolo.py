"""Fast YOLO (Redmon et al., "You Only Look Once", 2016): the 9-conv YOLOv1 with a per-cell 1x1 head.

Output layout, shape (N, S, S, B*5 + C), every value already activated and in [0, 1]:
    for each of the B boxes of a cell: x, y (offset within the cell), sqrt(w), sqrt(h) (relative to the
    image), objectness confidence; then the C class probabilities (softmax), shared by the cell's boxes.

Decoding to image boxes lives in ``edgevision.ops.yolo`` so that devices can run it without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# darknet's tiny YOLOv1 widths with a ninth 256-wide conv; the paper only says "fewer filters"
PAPER_WIDTHS = (16, 32, 64, 128, 256, 512, 1024, 256, 256)


class ConvBNLeaky(nn.Sequential):
    """3x3 conv (no bias), BatchNorm, LeakyReLU(0.1): darknet's ``batch_normalize=1 activation=leaky``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.1, inplace=True),
        )


class FastYOLO(nn.Module):
    """Nine conv layers; a 2x2 max-pool follows each of the first ``num_pools`` of them.

    Args:
        num_classes: C.
        boxes_per_cell: B.
        widths: output channels of the nine conv layers.
        num_pools: stride = 2 ** num_pools; the grid is S = imgsz / stride.
        outlier: (conv layer, channel, scale): after loading, scale that output channel up and the next layer's
            matching input weights down. The FP32 function is unchanged (LeakyReLU and max-pool commute with a
            positive scale) but the activation gets a large outlier, the classic case that breaks per-tensor
            INT8; it exists to demonstrate accuracy-controlled quantization.
    """

    task = "detect"

    def __init__(
        self,
        num_classes: int = 20,
        boxes_per_cell: int = 2,
        widths: Sequence[int] = PAPER_WIDTHS,
        num_pools: int = 6,
        outlier: tuple[int, int, float] | None = None,
    ) -> None:
        super().__init__()
        if len(widths) != 9:
            raise ValueError(f"Fast YOLO has 9 conv layers, got {len(widths)} widths")
        self.num_classes = num_classes
        self.boxes_per_cell = boxes_per_cell
        self.stride = 2**num_pools
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(widths):
            layers.append(ConvBNLeaky(cin, cout))
            if i < num_pools:
                layers.append(nn.MaxPool2d(2, 2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, boxes_per_cell * 5 + num_classes, 1)
        self.outlier = outlier

    @torch.no_grad()
    def after_load(self) -> None:
        """Apply the ``outlier`` rescaling (a no-op for ordinary variants)."""
        if self.outlier is None:
            return
        layer, channel, scale = self.outlier
        blocks = [m for m in self.features if isinstance(m, ConvBNLeaky)]
        bn = blocks[layer][1]
        bn.weight[channel] *= scale
        bn.bias[channel] *= scale
        nxt = blocks[layer + 1][0] if layer + 1 < len(blocks) else self.head
        nxt.weight[:, channel] /= scale

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised image -> (N, S, S, B*5+C) logits."""
        return self.head(self.features(x)).permute(0, 2, 3, 1)

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        boxes = torch.sigmoid(raw[..., : self.boxes_per_cell * 5])
        probs = torch.softmax(raw[..., self.boxes_per_cell * 5 :], dim=-1)
        return torch.cat([boxes, probs], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised image -> (N, S, S, B*5+C) activated predictions."""
        return self.activate(self.forward_raw(x))

    def head_spec(self, imgsz: int) -> dict:
        """What the NumPy decoder needs to turn the output into boxes."""
        return {
            "kind": "yolov1",
            "grid": imgsz // self.stride,
            "boxes_per_cell": self.boxes_per_cell,
            "num_classes": self.num_classes,
            "sqrt_wh": True,
        }

