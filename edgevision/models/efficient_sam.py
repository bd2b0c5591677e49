"""EfficientSAM-style promptable segmentation, with the official checkpoints' state_dict key names.

Written here from the layout in ``../shared/manifests/efficient_sam_vit{t,s}.json`` and the arithmetic of
yformer/EfficientSAM (d525f62): a plain ViT image encoder (``vit.Block``, shared with DeiT) and a conv neck to
256 channels; a prompt encoder of random Fourier position features plus one learned embedding per label
(-1 padding, 1 foreground, 0 background adds none, 2/3 box corners); SAM's two-way transformer mask decoder with
three multimask outputs. ``tests/test_efficient_sam.py`` checks embeddings, masks and IoU predictions against the
official code's outputs in ``../shared/reference``.

Two graphs, so that a click only runs the decoder (``export_graphs``):

* ``image_encoder``: (1, S, S, 3) uint8 -> ``image_embeddings`` (1, 256, S/16, S/16)
* ``mask_decoder``: ``image_embeddings`` + ``point_coords`` (1, 6, 2) in input pixels, padded with -1, and
  ``point_labels`` (1, 6) float, padded with -1 -> ``low_res_masks`` (1, 3, S/4, S/4) logits and
  ``iou_predictions`` (1, 3). Choosing a mask and upscaling it happen outside the graph.

Shapes: B batch, N tokens, C channels, g = S/16 the embedding grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevision.models.vit import Block, PatchEmbed

PROMPT_SLOTS = 6  # the decoder's fixed number of prompt points (official decoder_max_num_input_points)
NUM_MASKS = 3  # multimask outputs
PAD_LABEL, BACKGROUND, FOREGROUND, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3
PRETRAIN_GRID = 14  # pos_embed covers the 224 px pretraining grid (14 x 14) plus a class-token slot


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of (B, C, H, W).

    The official neck writes it out as mean / pow / sqrt: in FP16 (TensorRT) the squared deviations overflow,
    and an INT8 LiteRT graph rounds its epsilon to 0. Here it is one ``LayerNormalization`` op on channels-last
    data, which every runtime keeps in float with its epsilon intact.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def resize_abs_pos(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g0*g0, C) with a class-token slot -> (1, grid*grid, C): bicubic without antialiasing, as the
    official ``get_abs_pos`` resizes it (in every forward there; once per input size here)."""
    patches = pos_embed[:, 1:]
    old = math.isqrt(patches.shape[1])
    if old * old != patches.shape[1]:
        raise ValueError(f"position embedding of {patches.shape[1]} patches is not a square grid")
    if old == grid:
        return patches
    img = patches.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False)
    return img.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)


class ImageEncoderViT(nn.Module):
    """(B, 3, S, S) normalised images -> (B, neck_dim, S/p, S/p) image embeddings."""

    def __init__(self, img_size: int = 1024, patch_size: int = 16, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, neck_dim: int = 256,
                 pos_grid: int = PRETRAIN_GRID) -> None:
        super().__init__()
        self.img_size, self.patch_size, self.neck_dim = img_size, patch_size, neck_dim
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=1e-6)
                                     for _ in range(depth)])
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, neck_dim, 1, bias=False), LayerNorm2d(neck_dim),
            nn.Conv2d(neck_dim, neck_dim, 3, padding=1, bias=False), LayerNorm2d(neck_dim),
        )
        self.register_buffer("fixed_pos", torch.zeros(0), persistent=False)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def set_input_size(self, img_size: int) -> None:
        """Resize the position embedding once for ``img_size`` and keep it as a constant, so that an exported
        graph does not resize it in every forward. Training keeps resizing it from ``pos_embed``."""
        if img_size % self.patch_size:
            raise ValueError(f"input size {img_size} is not a multiple of the patch size {self.patch_size}")
        self.img_size = img_size
        with torch.no_grad():
            self.fixed_pos = resize_abs_pos(self.pos_embed.detach(), self.grid).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if h != self.img_size or w != self.img_size:
            raise ValueError(f"input is {h}x{w}; this encoder takes {self.img_size}x{self.img_size}")
        pos = self.fixed_pos if self.fixed_pos.numel() and not self.training else \
            resize_abs_pos(self.pos_embed, self.grid)
        x = self.patch_embed(x) + pos  # (B, g*g, C), row by row
        for block in self.blocks:
            x = block(x)
        g = self.grid
        return self.neck(x.transpose(1, 2).reshape(b, -1, g, g))


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of coordinates in [0, 1]^2: (..., 2) -> (..., 2F)."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, unit_coords: torch.Tensor) -> torch.Tensor:
        coords = (2 * unit_coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * np.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense(self, grid: int) -> torch.Tensor:
        """(C, grid, grid): the encoding of every embedding cell's centre."""
        centres = (torch.arange(grid, dtype=torch.float32, device=self.positional_encoding_gaussian_matrix.device)
                   + 0.5) / grid
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Points in input pixels (B, N, 2) and labels (B, N) -> sparse prompt embeddings (B, N, C)."""

    def __init__(self, embed_dim: int = 256, img_size: int = 1024) -> None:
        super().__init__()
        self.img_size = img_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.invalid_points = nn.Embedding(1, embed_dim)
        self.point_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, embed_dim)

    def forward(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # +0.5: the centre of the pixel; padding points (at -1) are encoded too and then marked invalid
        embedding = self.pe_layer.encode((coords + 0.5) / self.img_size)
        labels = labels.unsqueeze(-1)
        for label, table in ((PAD_LABEL, self.invalid_points), (FOREGROUND, self.point_embeddings),
                             (BOX_TOP_LEFT, self.bbox_top_left_embeddings),
                             (BOX_BOTTOM_RIGHT, self.bbox_bottom_right_embeddings)):
            embedding = embedding + table.weight * (labels == label).to(embedding.dtype)
        return embedding


class MLPBlock(nn.Module):
    """``num_layers`` Linear + activation layers of width ``hidden``, then a Linear to ``out_dim`` (keys
    ``layers.N.0`` and ``fc``, EfficientSAM's layout rather than SAM's)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * num_layers
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in zip(dims, dims[1:])])
        self.fc = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.fc(x)


class TokenAttention(nn.Module):
    """Attention whose projections may narrow the channels by ``downsample`` (SAM's decoder attention):
    q (B, Nq, C), k and v (B, Nk, C) -> (B, Nq, C)."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if inner % num_heads:
            raise ValueError(f"{num_heads} heads do not divide {inner} channels")
        self.num_heads = num_heads
        self.scale = 1.0 / math.sqrt(inner / num_heads)
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (B, 1, 1, Nk), added to the logits, masks keys out."""
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        logits = (q @ k.transpose(-2, -1)) * self.scale
        attn = torch.softmax(logits if bias is None else logits + bias, dim=-1)
        out = attn @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., n, c) @ (..., c, k) -> (..., n, k), both operands computed in the graph.

    LiteRT's converter turns a batch-1 matmul into a FULLY_CONNECTED whose weights are a graph tensor, which
    XNNPACK does not take: at 1024 px those ran in TFLite's own kernels and took 60 % of the decoder's time. An
    einsum becomes a BATCH_MATMUL that XNNPACK runs. ONNX keeps the matmul: ONNX Runtime's Einsum was slower."""
    if torch.onnx.is_in_onnx_export():
        return a @ b
    return torch.einsum("...nc,...ck->...nk", a, b)


class _BlockDiagonalAttention(TokenAttention):
    """``TokenAttention`` whose heads are laid out block-diagonally by multiplying with ``head_blocks``, an
    identity kept as a constant buffer: built inside ``forward``, LiteRT's converter lowers it to an iota op that
    its own interpreter cannot run."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1) -> None:
        super().__init__(dim, num_heads, downsample)
        self.register_buffer("head_blocks", torch.eye(num_heads), persistent=False)


class FewKeyAttention(_BlockDiagonalAttention):
    """``TokenAttention`` for many queries over a few keys (the image attending to the prompt tokens), with the
    same weights and arithmetic: q (B, Nq, C), k and v (B, Nk, C) -> (B, Nq, C).

    The keys and values of all heads are laid out block-diagonally, (inner, heads * Nk) and (heads * Nk, inner),
    and folded into the query and output projections. The Nq rows then pass through two matmuls of width
    heads * Nk instead of four of width ``inner`` plus the moves of every row between head layout and back,
    which is most of the decoder's time at 1024 px when Nk is the 11 prompt tokens."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (B, 1, 1, Nk), added to the logits, masks keys out."""
        b, nk, _ = k.shape
        h = self.num_heads
        eye = self.head_blocks.to(q.dtype)
        keys = self.k_proj(k).reshape(b, nk, h, -1).permute(0, 2, 3, 1)  # (B, h, d, Nk)
        keys = (keys.unsqueeze(3) * eye[:, None, :, None]).reshape(b, -1, h * nk)  # (B, h*d, h*Nk)
        values = self.v_proj(v).reshape(b, nk, h, -1).transpose(1, 2)  # (B, h, Nk, d)
        values = (values.unsqueeze(3) * eye[:, None, :, None]).reshape(b, h * nk, -1)  # (B, h*Nk, h*d)
        w_q = self.q_proj.weight.t() @ keys * self.scale  # (B, C, h*Nk)
        logits = batched_matmul(q, w_q) + (self.q_proj.bias @ keys * self.scale).unsqueeze(1)
        logits = logits.reshape(b, -1, h, nk)
        if bias is not None:
            logits = logits + bias.reshape(b, 1, 1, nk)
        attn = torch.softmax(logits, dim=-1).reshape(b, -1, h * nk)
        return batched_matmul(attn, values @ self.out_proj.weight.t()) + self.out_proj.bias


class FewQueryAttention(_BlockDiagonalAttention):
    """``TokenAttention`` for a few queries over many keys (the prompt tokens attending to the image), with the
    same weights and arithmetic: q (B, Nq, C), k and v (B, Nk, C) -> (B, Nq, C).

    The queries of all heads, laid out block-diagonally (heads * Nq, inner), are folded into the key
    projection, and the value projection is applied after the attention (softmax rows sum to one, so the bias
    passes through). The Nk rows are then read by two matmuls of width heads * Nq instead of being projected
    twice to width ``inner`` and moved into head layout."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (B, 1, 1, Nk), added to the logits, masks keys out."""
        b, nq, _ = q.shape
        h = self.num_heads
        eye = self.head_blocks.to(q.dtype)
        queries = self.q_proj(q).reshape(b, nq, h, -1).transpose(1, 2)  # (B, h, Nq, d)
        queries = (queries.unsqueeze(3) * eye[:, None, :, None]).reshape(b, h * nq, -1)  # (B, h*Nq, h*d)
        logits = batched_matmul(queries @ self.k_proj.weight, k.transpose(1, 2)) + \
            (queries @ self.k_proj.bias).unsqueeze(-1)
        logits = (logits * self.scale).reshape(b, h, nq, -1)
        if bias is not None:
            logits = logits + bias
        attn = torch.softmax(logits, dim=-1).reshape(b, h * nq, -1)
        # (B, h*Nq, h*d): every head's mix through every head's rows
        mixed = batched_matmul(attn, v) @ self.v_proj.weight.t()
        out = (mixed.reshape(b, h, nq, h, -1) * eye[:, None, :, None]).sum(3)  # each head's own block
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, -1) + self.v_proj.bias)


class TwoWayAttentionBlock(nn.Module):
    """Tokens attend to themselves, then to the image; an MLP on the tokens; then the image attends to the
    tokens. Post-norm, as SAM."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample: int = 2,
                 skip_first_layer_pe: bool = False, mlp: Callable[[int, int], nn.Module] | None = None,
                 sam_self_attention: bool = False, folded: bool = False) -> None:
        super().__init__()
        self.sam_self_attention = sam_self_attention
        self.self_attn = TokenAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        to_image, to_tokens = (FewQueryAttention, FewKeyAttention) if folded else (TokenAttention, TokenAttention)
        self.cross_attn_token_to_image = to_image(dim, num_heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_dim) if mlp else MLPBlock(dim, mlp_dim, dim, 1)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = to_tokens(dim, num_heads, downsample)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe, token_bias=None):
        """``token_bias`` (B, 1, 1, T) masks tokens out wherever they are keys (SAM 2's unused prompt slots)."""
        if self.sam_self_attention:
            # SAM / SAM 2: the first layer replaces the tokens by their self-attention (no residual); later
            # layers add the position encoding to queries and keys only
            if self.skip_first_layer_pe:
                queries = self.norm1(self.self_attn(queries, queries, queries, token_bias))
            else:
                q = queries + query_pe
                queries = self.norm1(queries + self.self_attn(q, q, queries, token_bias))
        else:
            if not self.skip_first_layer_pe:
                queries = queries + query_pe
            queries = self.norm1(queries + self.self_attn(queries, queries, queries))
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries, token_bias))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """image (B, C, g, g), its position encoding (1, C, g, g), tokens (B, T, C) -> (tokens, image tokens
    (B, g*g, C))."""

    def __init__(self, depth: int = 2, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048,
                 downsample: int = 2, mlp: Callable[[int, int], nn.Module] | None = None,
                 sam_self_attention: bool = False, folded: bool = False) -> None:
        super().__init__()
        # EfficientSAM's and SAM 2's blocks differ in their MLP (``mlp(dim, mlp_dim)``: keys and activation) and
        # in the self-attention's residual (``sam_self_attention``). ``folded`` computes the image/token
        # attentions as FewQueryAttention and FewKeyAttention: the same arithmetic in another order, a fifth less
        # of the decoder's time at 1024 px. SAM 2 keeps the plain order: its memory path binarises mask logits,
        # and the last-bit differences of a reordering flipped pixels near 0 against the official video run.
        self.layers = nn.ModuleList([TwoWayAttentionBlock(dim, num_heads, mlp_dim, downsample, i == 0, mlp,
                                                          sam_self_attention, folded) for i in range(depth)])
        self.final_attn_token_to_image = (FewQueryAttention if folded else TokenAttention)(dim, num_heads,
                                                                                            downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor,
                token_bias: torch.Tensor | None = None):
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe, token_bias)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class MaskDecoder(nn.Module):
    """image embeddings (B, C, g, g) + sparse prompts (B, N, C) -> all ``1 + NUM_MASKS`` mask logits
    (B, 4, 4g, 4g) and IoU predictions (B, 4); index 0 is the single-mask output, 1.. the multimask ones."""

    def __init__(self, dim: int = 256, depth: int = 2, num_heads: int = 8, mlp_dim: int = 2048,
                 upscale_dims: tuple[int, ...] = (64, 32), iou_head_depth: int = 2, iou_hidden: int = 256) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(depth, dim, num_heads, mlp_dim, folded=True)
        self.num_mask_tokens = NUM_MASKS + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        layers, width = [], dim
        for i, out in enumerate(upscale_dims):
            last = i == len(upscale_dims) - 1
            layers.append(nn.Sequential(nn.ConvTranspose2d(width, out, 2, stride=2),
                                        nn.Identity() if last else nn.GroupNorm(1, out), nn.GELU()))
            width = out
        self.final_output_upscaling_layers = nn.ModuleList(layers)
        self.output_hypernetworks_mlps = nn.ModuleList([MLPBlock(dim, dim, width, 2)
                                                        for _ in range(self.num_mask_tokens)])
        self.iou_prediction_head = MLPBlock(dim, iou_hidden, self.num_mask_tokens, iou_head_depth)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, prompts: torch.Tensor):
        b = prompts.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), prompts], dim=1)
        image = image.expand(b, -1, -1, -1)
        hs, src = self.transformer(image, image_pe, tokens)
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        return self.masks(src, hyper, image.shape[-1]), self.iou_prediction_head(hs[:, 0])

    def masks(self, src: torch.Tensor, hyper: torch.Tensor, g: int) -> torch.Tensor:
        """Image tokens (B, g*g, C) and the hypernetworks' outputs (B, K, c) -> mask logits (B, K, sg, sg), s
        the upscaling factor.

        A 2 x 2 transposed convolution of stride 2 maps each pixel to its own 2 x 2 block, and a GroupNorm of
        one group does not care about pixel order. So the upscaling runs as matmuls on the tokens with pixels
        kept in block order (pixel, then each layer's block offset), and only the K logit planes are put in
        image order at the end: moving the wide features into image order cost more than the convolutions on
        ONNX Runtime at 1024 px. The arithmetic is the layers' own."""
        b = src.shape[0]
        x = src
        for conv, norm, act in self.final_output_upscaling_layers:
            cin, cout = conv.weight.shape[:2]
            # rows ordered (dy, dx, out channel): each pixel becomes 4 pixels of its 2 x 2 block
            weight = conv.weight.permute(2, 3, 1, 0).reshape(4 * cout, cin)
            x = F.linear(x, weight, conv.bias.repeat(4)).reshape(b, -1, cout)
            if isinstance(norm, nn.GroupNorm):
                mean = x.mean(dim=(1, 2), keepdim=True)
                var = (x - mean).square().mean(dim=(1, 2), keepdim=True)
                x = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
            x = act(x)
        k = hyper.shape[1]
        levels = len(self.final_output_upscaling_layers)
        logits = batched_matmul(x, hyper.transpose(1, 2)).transpose(1, 2)  # (B, K, pixels in block order)
        # (B*K*g rows, g columns, then (dy, dx) per level) -> rows (dy per level), then columns (dx per level)
        logits = logits.reshape(b * k * g, g, *([2, 2] * levels))
        dys, dxs = [2 + 2 * i for i in range(levels)], [3 + 2 * i for i in range(levels)]
        side = g * 2 ** levels
        return logits.permute(0, *dys, 1, *dxs).reshape(b, k, side, side)


class EfficientSam(nn.Module):
    """The whole model, with the official checkpoint's top-level modules ``image_encoder``, ``prompt_encoder``
    and ``mask_decoder`` (the pixel mean/std are not in the checkpoint: the variant's preprocess holds them)."""

    output_names = ("low_res_masks", "iou_predictions")

    def __init__(self, num_classes: int | None = None, img_size: int = 1024, embed_dim: int = 192,
                 depth: int = 12, num_heads: int = 3, mlp_ratio: float = 4.0, neck_dim: int = 256,
                 decoder_depth: int = 2, decoder_heads: int = 8, decoder_mlp_dim: int = 2048,
                 upscale_dims: tuple[int, ...] = (64, 32), pos_grid: int = PRETRAIN_GRID,
                 decoder_grid: int | None = None) -> None:
        super().__init__()  # num_classes: the registry passes it to every family; promptable masks have none
        # a distilled student may take a smaller input than its teacher's decoder was trained on: its embeddings
        # are resized to ``decoder_grid`` (the teacher's grid) before the decoder
        self.decoder_grid = decoder_grid
        self.image_encoder = ImageEncoderViT(img_size, 16, embed_dim, depth, num_heads, mlp_ratio, neck_dim,
                                             pos_grid)
        self.prompt_encoder = PromptEncoder(neck_dim, img_size)
        self.mask_decoder = MaskDecoder(neck_dim, decoder_depth, decoder_heads, decoder_mlp_dim,
                                        tuple(upscale_dims))

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    def set_input_size(self, img_size: int) -> None:
        self.image_encoder.set_input_size(img_size)
        self.prompt_encoder.img_size = img_size

    @property
    def grid(self) -> int:
        """The decoder's embedding grid."""
        return self.decoder_grid or self.image_encoder.grid

    def dense_pe(self) -> torch.Tensor:
        """(1, C, g, g): the position encoding of the embedding grid."""
        return self.prompt_encoder.pe_layer.dense(self.grid).unsqueeze(0)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised -> (B, C, g, g), g the decoder's grid."""
        emb = self.image_encoder(images)
        if emb.shape[-1] != self.grid:
            emb = F.interpolate(emb, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
        return emb

    def decode(self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
               dense_pe: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's embeddings (1 or B, C, g, g) and B prompts of N points in input pixels -> the multimask
        outputs: logits (B, 3, 4g, 4g) and IoU predictions (B, 3)."""
        pe = self.dense_pe() if dense_pe is None else dense_pe
        masks, iou = self.mask_decoder(embeddings, pe, self.prompt_encoder(coords, labels.to(coords.dtype)))
        return masks[:, 1:], iou[:, 1:]

    def forward(self, images: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor):
        return self.decode(self.embed(images), coords, labels)

    def export_graphs(self, imgsz: int, preprocess) -> list:
        from edgevision.models.wrappers import prompt_segmentation_graphs

        return prompt_segmentation_graphs(self, imgsz, preprocess, PROMPT_SLOTS)

    def head_spec(self, imgsz: int) -> dict:
        g = self.decoder_grid or imgsz // self.image_encoder.patch_size
        return {"kind": "prompt-masks", "masks": "low_res_masks", "scores": "iou_predictions",
                "mask_size": 4 * g, "prompt_slots": PROMPT_SLOTS}


def efficient_sam_config(embed_dim: int, num_heads: int, depth: int = 12, **extra) -> dict:
    return {"embed_dim": embed_dim, "num_heads": num_heads, "depth": depth, **extra}
