"""SAM 2's image encoder: a Hiera trunk and an FPN neck, with the official checkpoints' key names.

Written here from the layout in ``../shared/manifests/sam2.1_hiera_{tiny,small}.json`` and the arithmetic of
facebookresearch/sam2 (2b90b9f): a hierarchical ViT whose stages halve the grid by max-pooling the queries of
their first block and double the channels; windowed attention except in a few global blocks; an absolute
position embedding made of a bicubically resized background plus a tiled per-window embedding. The neck projects
every stage to ``d_model`` channels and adds nearest-upsampled coarser levels into the top-down ones.

Shapes: B batch, S input size, H x W token grid (channels last inside the trunk), C channels.
``tests/test_sam2.py`` checks the features against the official code's outputs in ``../shared/reference``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``num_layers`` Linear layers with ``act`` between them (SAM 2's ``MLP``: keys ``layers.N``)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int, act: type[nn.Module] = nn.ReLU,
                 sigmoid_output: bool = False) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.act = act()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window, window, C), zero-padded to whole windows; also the padded (Hp, Wp)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(x: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """The inverse of ``window_partition``, cropping the padding: -> (B, H, W, C)."""
    (hp, wp), (h, w) = padded, size
    b = x.shape[0] // (hp * wp // window // window)
    x = x.reshape(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :h, :w]


def pool_grid(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    """Max-pool a channels-last grid (B, H, W, C) -> (B, H/s, W/s, C)."""
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Attention over (B, H, W, C) tokens whose queries may be pooled: -> (B, H', W', C_out)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None = None) -> None:
        super().__init__()
        self.num_heads, self.q_pool = num_heads, q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)  # each (B, HW, heads, c)
        if self.q_pool is not None:
            q = pool_grid(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm (windowed) attention and MLP; the first block of a stage pools its queries and widens."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float = 4.0,
                 q_stride: tuple[int, int] | None = None, window: int = 0) -> None:
        super().__init__()
        self.dim, self.dim_out, self.window, self.q_stride = dim, dim_out, window, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.pool = nn.MaxPool2d(kernel_size=q_stride, stride=q_stride) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_pool=self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, act=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = pool_grid(self.proj(x), self.pool)
        window = self.window
        if window > 0:
            size = x.shape[1:3]
            x, padded = window_partition(x, window)
        x = self.attn(x)
        if self.q_stride:
            # the queries were pooled inside each window: windows shrank with them
            window = self.window // self.q_stride[0]
            size = shortcut.shape[1:3]
            padded = tuple(s + (window - s % window) % window for s in size) if window > 0 else size
        if self.window > 0:
            x = window_unpartition(x, window, padded, size)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """(B, 3, S, S) -> (B, S/4, S/4, C): a 7x7 stride-4 convolution, channels last."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """(B, 3, S, S) -> one (B, C_i, S/4/2^i, S/4/2^i) feature map per stage, finest first."""

    def __init__(self, embed_dim: int = 96, num_heads: int = 1, stages: tuple[int, ...] = (1, 2, 7, 2),
                 global_att_blocks: tuple[int, ...] = (5, 7, 9), window_spec: tuple[int, ...] = (8, 4, 14, 7),
                 window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7), q_pool: int = 3,
                 q_stride: tuple[int, int] = (2, 2), dim_mul: float = 2.0, head_mul: float = 2.0) -> None:
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError(f"{len(stages)} stages but {len(window_spec)} window sizes")
        self.stage_ends = [sum(stages[:i]) - 1 for i in range(1, len(stages) + 1)]
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))
        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(stages)):
            dim_out = embed_dim
            # the window size lags a block: a stage's first block still uses the previous stage's window
            window = 0 if i in global_att_blocks else window_spec[stage]
            if i - 1 in self.stage_ends:
                dim_out, num_heads, stage = int(embed_dim * dim_mul), int(num_heads * head_mul), stage + 1
            self.blocks.append(MultiScaleBlock(embed_dim, dim_out, num_heads,
                                               q_stride=q_stride if i in q_pool_blocks else None, window=window))
            embed_dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1, h, w, C): the background resized bicubically plus the window embedding tiled over it."""
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pos = pos + win.tile(1, 1, h // win.shape[-2], w // win.shape[-1])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self.position_embedding(*x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


def sine_position_encoding(channels: int, h: int, w: int, temperature: float = 10000.0) -> torch.Tensor:
    """(1, channels, h, w): DETR's normalised sine encoding, y features then x features (SAM 2's
    ``PositionEmbeddingSine`` with normalize=True)."""
    half = channels // 2
    scale, eps = 2 * math.pi, 1e-6
    y = torch.arange(1, h + 1, dtype=torch.float32).view(-1, 1).expand(h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32).view(1, -1).expand(h, w)
    y = y / (h + eps) * scale
    x = x / (w + eps) * scale
    dim_t = temperature ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)

    def interleave(p: torch.Tensor) -> torch.Tensor:
        p = p[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((interleave(y), interleave(x)), dim=-1).permute(2, 0, 1).unsqueeze(0)


class _Conv(nn.Module):
    """A 1x1 projection under the official key ``convs.N.conv``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Trunk features (finest first) -> ``d_model``-channel features (finest first); levels listed in
    ``top_down_levels`` add the nearest-upsampled next-coarser output."""

    def __init__(self, d_model: int = 256, backbone_channel_list: tuple[int, ...] = (768, 384, 192, 96),
                 top_down_levels: tuple[int, ...] = (2, 3)) -> None:
        super().__init__()
        self.d_model = d_model
        self.convs = nn.ModuleList(_Conv(c, d_model) for c in backbone_channel_list)
        self.top_down_levels = tuple(top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [xs[0]] * len(xs)
        previous = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and previous is not None:
                lateral = lateral + F.interpolate(previous, scale_factor=2.0, mode="nearest")
            out[i] = previous = lateral
        return out


class ImageEncoder(nn.Module):
    """(B, 3, S, S) normalised -> the neck's levels kept after dropping the ``scalp`` coarsest, finest first:
    for SAM 2.1 at 1024, (B, 256, 256, 256), (B, 256, 128, 128) and (B, 256, 64, 64)."""

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != list(neck_channels(neck)):
            raise ValueError(f"trunk channels {trunk.channel_list} do not match the neck's")
        self.trunk, self.neck, self.scalp = trunk, neck, scalp

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.neck(self.trunk(x))
        return features[: len(features) - self.scalp] if self.scalp else features


def neck_channels(neck: FpnNeck) -> list[int]:
    return [c.conv.in_channels for c in neck.convs]
