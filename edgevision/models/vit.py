"""Plain Vision Transformer blocks and the DeiT classifiers, with timm's state_dict key names.

Written here, not imported from timm: timm imports torchvision, whose PyPI wheel links CUDA PyTorch and does not
load beside the CPU build. The key names and the arithmetic follow timm 1.0 (``timm.models.vision_transformer``
and ``timm.models.deit``): LayerNorm eps 1e-6, exact GELU, a fused ``qkv`` projection, class (and distillation)
tokens before the patch tokens, the position embedding covering them all. ``tests/test_vit.py`` checks the
logits against timm's own on ``../shared/reference``. The EfficientSAM image encoder is the same plain ViT and
shares ``Block``.

Shapes: B batch, N tokens, C embedding dim, H heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """(B, 3, S, S) -> (B, (S/p)^2, C): a p x p convolution with stride p, flattened row by row."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention, (B, N, C) -> (B, N, C).

    In eval mode, and so in every export, it is written out as matmul-softmax-matmul so that every converter sees
    the same ops (and INT8 quantizers find the two matmuls). In training it runs PyTorch's fused kernel, the same
    arithmetic without keeping the (N, N) attention map for the backward pass: at 1,024 tokens that is 2-3x faster
    and is what makes distilling a 512-px teacher practical on a CPU."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, H, N, C/H)
        if self.training:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf), as timm
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def resample_pos_embed(pos_embed: torch.Tensor, grid: int, prefix_tokens: int) -> torch.Tensor:
    """(1, prefix + g*g, C) -> (1, prefix + grid*grid, C): the patch part resized bicubic with antialiasing, as
    timm's ``resample_abs_pos_embed``; the class/distillation tokens' embeddings kept as they are."""
    prefix, patches = pos_embed[:, :prefix_tokens], pos_embed[:, prefix_tokens:]
    old = int(math.isqrt(patches.shape[1]))
    if old * old != patches.shape[1]:
        raise ValueError(f"position embedding of {patches.shape[1]} patches is not a square grid")
    if old == grid:
        return pos_embed
    c = patches.shape[-1]
    img = patches.reshape(1, old, old, c).permute(0, 3, 1, 2).float()
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", antialias=True, align_corners=False)
    patches = img.permute(0, 2, 3, 1).reshape(1, grid * grid, c).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)


class VisionTransformer(nn.Module):
    """ViT / DeiT classifier: (B, 3, S, S) normalised images -> (B, num_classes) logits.

    ``distilled`` adds DeiT's distillation token and second head; in eval mode the two heads' logits are
    averaged, as timm's ``VisionTransformerDistilled`` does.
    """

    output_names = ("logits",)

    def __init__(self, num_classes: int = 1000, img_size: int = 224, patch_size: int = 16, embed_dim: int = 192,
                 depth: int = 12, num_heads: int = 3, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 distilled: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_prefix_tokens = 2 if distilled else 1
        self.distilled = distilled
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + self.num_prefix_tokens, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.head_dist = nn.Linear(embed_dim, num_classes) if distilled else None
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)
        for m in self.modules():  # timm's init: PyTorch's default Linear init keeps a deep ViT from training
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def set_input_size(self, img_size: int) -> None:
        """Resample the position embedding once for ``img_size`` (a multiple of the patch size), so that the
        exported graph holds it as a constant instead of resizing it in every forward."""
        if img_size % self.patch_size:
            raise ValueError(f"input size {img_size} is not a multiple of the patch size {self.patch_size}")
        with torch.no_grad():
            resized = resample_pos_embed(self.pos_embed.data, img_size // self.patch_size, self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(resized, requires_grad=self.pos_embed.requires_grad)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, prefix + (S/p)^2, C) after the final norm."""
        x = self.patch_embed(x)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.dist_token is not None:
            prefix.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = torch.cat([*prefix, x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens after the final norm -> (B, num_classes) logits (the two heads averaged if distilled)."""
        logits = self.head(tokens[:, 0])
        if self.head_dist is not None:
            logits = (logits + self.head_dist(tokens[:, 1])) / 2
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def head_spec(self, imgsz: int) -> dict:
        return {"kind": "classify", "output": "logits", "num_classes": self.head.out_features}


def deit_config(embed_dim: int, num_heads: int, distilled: bool = False, depth: int = 12) -> dict:
    return {"patch_size": 16, "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "distilled": distilled}
