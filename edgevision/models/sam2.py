"""SAM 2.1-style video object segmentation, with the official checkpoints' state_dict key names.

Written here from the layout in ``../shared/manifests/sam2.1_hiera_{tiny,small}.json`` and the arithmetic of
facebookresearch/sam2 (2b90b9f). The model is split into four pieces, each a static graph once exported
(``export_graphs``), with the memory bank kept outside them (``edgevision.ops.memory_bank``, NumPy):

* ``encode_image``: a frame -> its lowest-resolution features ``vision_features`` (B, 256, g, g) and the two
  high-resolution skip features the mask decoder takes (after its ``conv_s0``/``conv_s1``).
* ``condition``: ``vision_features`` + a fixed number of memory slots and object pointers, each with a validity
  flag -> memory-conditioned features (B, 256, g, g). Empty slots are masked in the attention, never dropped,
  so shapes never change. RoPE uses real cos/sin tables (complex numbers do not export).
* ``decode``: conditioned features + prompt points -> all four mask logits, IoU predictions, object pointers
  and the object score. Which mask to keep (multimask or single with its stability fallback) is decided
  outside, as SAM 2 decides it from the number of prompt points.
* ``encode_memory``: ``vision_features`` + the kept mask's logits -> the frame's memory features.

Shapes: B objects, S input size, g = S/16 the feature grid, N = g*g tokens, M memory slots, P object pointers.
``tests/test_sam2.py`` checks image mode and a 4-frame video run against the official code's outputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevision.models.efficient_sam import ImageEncoderViT, LayerNorm2d, PositionEmbeddingRandom, TokenAttention, \
    TwoWayTransformer, batched_matmul
from edgevision.models.registry import get_variant
from edgevision.models.hiera import MLP, FpnNeck, Hiera, ImageEncoder, sine_position_encoding

NO_OBJ_SCORE = -1024.0  # the mask logit SAM 2 writes where the object score says "absent"
NUM_MASK_TOKENS = 4  # token 0: the single-mask output; 1-3: the multimask outputs
MASK_BIAS = -30000.0  # the attention bias of an empty memory slot: exp() of it is 0, and it fits FP16
# SAM 2 pads every prompt with one "not a point" token that takes part in attention (two when tracking without
# a prompt), so a static graph cannot pad with more of them: its spare prompt slots carry this label and are
# masked out of the attention instead
UNUSED_SLOT = -2


# ----------------------------------------------------------------------------------------- rotary encoding
def axial_rope_tables(dim: int, grid: int, theta: float = 10000.0, stride: int = 1) -> tuple[torch.Tensor,
                                                                                          torch.Tensor]:
    """cos and sin (grid*grid, dim/2) of SAM 2's axial RoPE: the first half of the channel pairs turn with
    the token's column, the second half with its row; tokens in row-major order. ``stride`` > 1: the tokens of a
    grid pooled by ``stride``, each at the centre of the cells it averages, in the full grid's units."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(grid * grid, dtype=torch.float32)
    col, row = t % grid, torch.div(t, grid, rounding_mode="floor")
    centre = (stride - 1) / 2
    angles = torch.cat([torch.outer(col * stride + centre, freqs), torch.outer(row * stride + centre, freqs)], -1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (..., N, C) by the angles of (N, C/2) tables."""
    pairs = x.unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class RoPEAttention(TokenAttention):
    """Attention with RoPE on the queries and on the first ``num_rope_keys`` keys (memory slots share one grid
    of positions, so the key tables repeat once per slot; they default to the query tables); ``bias``
    (B, 1, 1, Nk) masks keys."""

    def __init__(self, dim: int, num_heads: int = 1, kv_dim: int | None = None) -> None:
        super().__init__(dim, num_heads)
        if kv_dim is not None:
            self.k_proj, self.v_proj = nn.Linear(kv_dim, dim), nn.Linear(kv_dim, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor | None = None,
                sin: torch.Tensor | None = None, num_rope_keys: int | None = None,
                bias: torch.Tensor | None = None, key_tables: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        q = apply_rope(q, cos, sin)
        k_cos, k_sin = key_tables if key_tables is not None else (cos, sin)
        n_rope = k.shape[-2] if num_rope_keys is None else num_rope_keys
        repeat = n_rope // k_cos.shape[0]
        rotated = apply_rope(k[..., :n_rope, :], k_cos.repeat(repeat, 1), k_sin.repeat(repeat, 1))
        k = torch.cat([rotated, k[..., n_rope:, :]], dim=-2) if n_rope < k.shape[-2] else rotated
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
            # written out, so that the graph holds plain matmuls and Softmax that every target's quantizer knows
            # (the fused kernel became FULLY_CONNECTEDs on LiteRT, which XNNPACK left to TFLite's own kernels)
            logits = batched_matmul(q, k.transpose(-2, -1)) * self.scale
            if bias is not None:
                logits = logits + bias
            out = batched_matmul(torch.softmax(logits, dim=-1), v)
        else:
            # the same sum without the (N, Nk) logits in memory: a full 1024 px bank's are 470 MB a layer, and
            # PyTorch's fused kernel takes half the time there (1 thread: 1.9 s against 3.7 s a call)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


# ----------------------------------------------------------------------------------------- memory attention
class MemoryAttentionLayer(nn.Module):
    """Pre-norm RoPE self-attention over the frame, cross-attention to the memory, then an MLP."""

    def __init__(self, dim: int = 256, mem_dim: int = 64, ffn_dim: int = 2048, num_heads: int = 1) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(dim, num_heads)
        self.cross_attn_image = RoPEAttention(dim, num_heads, kv_dim=mem_dim)
        self.linear1, self.linear2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, memory, memory_pos, cos, sin, num_spatial: int, bias, key_tables=None):
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, cos, sin)
        h = self.norm2(x)
        x = x + self.cross_attn_image(h, memory + memory_pos, memory, cos, sin, num_spatial, bias, key_tables)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """Frame tokens (B, N, C) with their position encoding attend to memory tokens (B, Nk, C_mem)."""

    def __init__(self, dim: int = 256, mem_dim: int = 64, num_layers: int = 4, ffn_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(dim, mem_dim, ffn_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, x_pos, memory, memory_pos, cos, sin, num_spatial: int, bias,
                key_tables=None) -> torch.Tensor:
        x = x + 0.1 * x_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, cos, sin, num_spatial, bias, key_tables)
        return self.norm(x)


# ----------------------------------------------------------------------------------------- memory encoder
class MaskDownSampler(nn.Module):
    """(B, 1, S, S) mask -> (B, C, S/16, S/16): four stride-2 convolutions, each x4 channels, then 1x1."""

    def __init__(self, dim: int = 256, levels: int = 4) -> None:
        super().__init__()
        layers, width = [], 1
        for _ in range(levels):
            layers += [nn.Conv2d(width, width * 4, 3, stride=2, padding=1), LayerNorm2d(width * 4), nn.GELU()]
            width *= 4
        self.encoder = nn.Sequential(*layers, nn.Conv2d(width, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + h.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Frame features (B, C, g, g) + mask (B, 1, S, S), already squashed -> memory features (B, C_mem, g, g)."""

    def __init__(self, dim: int = 256, mem_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(dim)
        self.pix_feat_proj = nn.Conv2d(dim, dim, 1)
        self.fuser = Fuser(dim)
        self.out_proj = nn.Conv2d(dim, mem_dim, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.fuser(self.pix_feat_proj(features) + self.mask_downsampler(mask)))


# ----------------------------------------------------------------------------------------- SAM heads
class Sam2PromptEncoder(nn.Module):
    """Points in input pixels (B, N, 2) with labels (B, N) -> sparse embeddings (B, N, C); label -1 pads, 0
    background, 1 foreground, 2/3 box corners. An optional low-res mask (B, 1, 4g, 4g) -> dense embeddings."""

    def __init__(self, dim: int = 256, img_size: int = 1024) -> None:
        super().__init__()
        self.img_size = img_size
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, 4, 2, stride=2), LayerNorm2d(4), nn.GELU(),
            nn.Conv2d(4, 16, 2, stride=2), LayerNorm2d(16), nn.GELU(), nn.Conv2d(16, dim, 1))
        self.no_mask_embed = nn.Embedding(1, dim)

    def forward(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.unsqueeze(-1)
        embedding = self.pe_layer.encode((coords + 0.5) / self.img_size)
        embedding = torch.where(labels < 0, self.not_a_point_embed.weight, embedding)
        for label, table in enumerate(self.point_embeddings):
            embedding = embedding + table.weight * (labels == label).to(embedding.dtype)
        return embedding

    def dense(self, masks: torch.Tensor | None, batch: int, grid: int) -> torch.Tensor:
        if masks is not None:
            return self.mask_downscaling(masks)
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, grid, grid)


class Sam2MaskDecoder(nn.Module):
    """SAM's two-way transformer with an object-score token and high-res skip features: features (B, C, g, g)
    + sparse (B, N, C) + dense (B, C, g, g) -> mask logits (B, 4, 4g, 4g), IoU (B, 4), mask tokens (B, 4, C)
    and object score logits (B, 1). ``project_skips``: the model projects Hiera's skip features with this
    decoder's ``conv_s0``/``conv_s1`` (the official layout); given skips None, the mask is upscaled from the
    features alone."""

    def __init__(self, dim: int = 256, mlp_dim: int = 2048, project_skips: bool = True) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(2, dim, 8, mlp_dim, mlp=lambda d, h: MLP(d, h, d, 2),
                                              sam_self_attention=True)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(NUM_MASK_TOKENS, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU())
        if project_skips:
            self.conv_s0 = nn.Conv2d(dim, dim // 8, 1)
            self.conv_s1 = nn.Conv2d(dim, dim // 4, 1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(NUM_MASK_TOKENS))
        self.iou_prediction_head = MLP(dim, 256, NUM_MASK_TOKENS, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def forward(self, features, image_pe, sparse, dense, feat_s0, feat_s1, prompt_valid=None):
        """``prompt_valid`` (B, N): 0 masks a prompt slot out of the attention."""
        b = sparse.shape[0]
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        bias = None
        if prompt_valid is not None:
            valid = torch.cat([torch.ones(b, out_tokens.shape[0], dtype=sparse.dtype, device=sparse.device),
                               prompt_valid.to(sparse.dtype)], dim=1)
            bias = ((1.0 - valid) * MASK_BIAS).reshape(b, 1, 1, -1)
        src = features + dense
        hs, src = self.transformer(src, image_pe, tokens, bias)
        _, c, g, _ = features.shape
        src = src.transpose(1, 2).reshape(b, c, g, g)
        up1, norm, act1, up2, act2 = self.output_upscaling
        if feat_s0 is None:  # a model without the high-res skips (a plain ViT encoder has one scale)
            up = act2(up2(act1(norm(up1(src)))))
        else:
            up = act1(norm(up1(src) + feat_s1))
            up = act2(up2(up) + feat_s0)
        mask_tokens = hs[:, 2:2 + NUM_MASK_TOKENS]
        hyper = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        _, c, h, w = up.shape
        masks = (hyper @ up.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(hs[:, 1]), mask_tokens, self.pred_obj_score_head(hs[:, 0])


class SkipStem(nn.Module):
    """The decoder's high-res skips for a one-scale ViT encoder, from the image: a 4 x 4 patch conv and a 2 x 2
    one, (B, 3, S, S) -> (B, C/8, S/4, S/4) and (B, C/4, S/8, S/8), the shapes Hiera's skips have after
    ``conv_s0``/``conv_s1``. A 16-pixel token grid alone cannot place a small object's edge; these carry the
    edges at 4 and 8 pixels, for about 1.5 % of the demo's MACs. The projections start at zero, so adding the
    stem to a decoder trained without skips starts from that decoder's output."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.patch = nn.Sequential(nn.Conv2d(3, dim // 4, 4, stride=4), nn.GELU())
        self.down = nn.Sequential(nn.Conv2d(dim // 4, dim // 2, 2, stride=2), nn.GELU())
        self.proj_s0 = nn.Conv2d(dim // 4, dim // 8, 1)
        self.proj_s1 = nn.Conv2d(dim // 2, dim // 4, 1)
        for proj in (self.proj_s0, self.proj_s1):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch(images)
        return self.proj_s0(x), self.proj_s1(self.down(x))


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(...,) -> (..., dim): sin features then cos features (SAM 2's ``get_1d_sine_pe``)."""
    half = dim // 2
    dim_t = temperature ** (2 * (torch.arange(half, dtype=torch.float32, device=positions.device) // 2) / half)
    p = positions.unsqueeze(-1) / dim_t
    return torch.cat([p.sin(), p.cos()], dim=-1)


# ----------------------------------------------------------------------------------------- the model
class Sam2(nn.Module):
    """The whole model, with the official checkpoint's top-level names (``image_encoder``, ``memory_attention``,
    ``memory_encoder``, ``sam_prompt_encoder``, ``sam_mask_decoder``, ``obj_ptr_proj`` and the learned
    embeddings). Loads ``torch.load(ckpt, weights_only=True)["model"]`` strictly."""

    def __init__(self, num_classes: int | None = None, img_size: int = 1024, embed_dim: int = 96,
                 num_heads: int = 1, stages: tuple[int, ...] = (1, 2, 7, 2),
                 global_att_blocks: tuple[int, ...] = (5, 7, 9), window_pos_embed_bkg: tuple[int, int] = (7, 7),
                 dim: int = 256, mem_dim: int = 64, num_maskmem: int = 7, memory_layers: int = 4,
                 memory_pool: int = 1, memory_ffn_dim: int = 2048, decoder_mlp_dim: int = 2048,
                 vit: dict | None = None, skip_stem: bool = False) -> None:
        super().__init__()  # num_classes: the registry passes it to every family; tracks have none
        # ``vit``: an EfficientSAM-style ViT image encoder (ImageEncoderViT arguments, its neck giving ``dim``
        # channels) instead of Hiera: one scale, so the decoder has no high-res skips (EfficientTAM's layout)
        # unless ``skip_stem`` adds a small conv stem that makes them from the image
        if vit is None and skip_stem:
            raise ValueError("skip_stem is for a ViT encoder: Hiera has its own high-res features")
        if vit is None:
            trunk = Hiera(embed_dim, num_heads, tuple(stages), tuple(global_att_blocks),
                          window_pos_embed_bkg_spatial_size=tuple(window_pos_embed_bkg))
            self.image_encoder = ImageEncoder(trunk, FpnNeck(dim, tuple(trunk.channel_list)), scalp=1)
        else:
            self.image_encoder = ImageEncoderViT(img_size=img_size, neck_dim=dim, **vit)
        self.one_scale = vit is not None
        self.skip_stem = SkipStem(dim) if skip_stem else None
        self.high_res_features = vit is None or skip_stem
        self.memory_attention = MemoryAttention(dim, mem_dim, memory_layers, memory_ffn_dim)
        self.memory_encoder = MemoryEncoder(dim, mem_dim)
        self.sam_prompt_encoder = Sam2PromptEncoder(dim, img_size)
        self.sam_mask_decoder = Sam2MaskDecoder(dim, decoder_mlp_dim, vit is None)
        self.obj_ptr_proj = MLP(dim, dim, dim, 3)
        self.obj_ptr_tpos_proj = nn.Linear(dim, mem_dim)
        # a mask prompt (B, 1, S, S) -> the decoder's mask input (B, 1, 4g, 4g), as SAM 2 turns it
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(num_maskmem, 1, 1, mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, dim))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, dim))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem_dim))
        self.dim, self.mem_dim, self.num_maskmem = dim, mem_dim, num_maskmem
        # EfficientTAM-style: memory features are average-pooled memory_pool x memory_pool when encoded, so
        # the bank holds and the cross-attention reads 1/memory_pool^2 of the spatial tokens (pointers unpooled)
        self.memory_pool = memory_pool
        self.img_size = img_size
        self.set_input_size(img_size)

    # constants of the input size, kept out of the state_dict (the official model makes them on the fly)
    def set_input_size(self, img_size: int) -> None:
        if img_size % 32:
            raise ValueError(f"input size {img_size} is not a multiple of 32")
        self.img_size = self.sam_prompt_encoder.img_size = img_size
        if self.one_scale:
            self.image_encoder.set_input_size(img_size)
        g = img_size // 16
        cos, sin = axial_rope_tables(self.dim, g)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("vision_pos", sine_position_encoding(self.dim, g, g).flatten(2).transpose(1, 2),
                             persistent=False)
        pool = self.memory_pool
        if g % pool:
            raise ValueError(f"input size {img_size}: its {g}x{g} feature grid does not pool by {pool}")
        memory_pos = F.avg_pool2d(sine_position_encoding(self.mem_dim, g, g), pool) if pool > 1 else \
            sine_position_encoding(self.mem_dim, g, g)
        self.register_buffer("memory_pos", memory_pos.flatten(2).transpose(1, 2), persistent=False)
        cos, sin = axial_rope_tables(self.dim, g // pool, stride=pool)
        self.register_buffer("key_cos", cos, persistent=False)
        self.register_buffer("key_sin", sin, persistent=False)

    @property
    def memory_grid(self) -> int:
        """The side of a memory slot's feature grid (the feature grid, pooled)."""
        return self.img_size // 16 // self.memory_pool

    @property
    def grid(self) -> int:
        return self.img_size // 16

    def export_graphs(self, imgsz: int, preprocess, *, prompt_slots: int = 8, max_cond_frames: int = 4,
                      max_ptrs: int = 16) -> list:
        """The four static tracker graphs; the capacity fixes their shapes and goes in the bundle's head."""
        from edgevision.models.wrappers import tracker_graphs

        self.capacity = {"prompt_slots": prompt_slots, "max_cond_frames": max_cond_frames, "max_ptrs": max_ptrs}
        return tracker_graphs(self, imgsz, preprocess, **self.capacity)

    def head_spec(self, imgsz: int) -> dict:
        """What ``edgevision.tracker.Tracker`` needs to know of the exported graphs."""
        capacity = getattr(self, "capacity", {"prompt_slots": 8, "max_cond_frames": 4, "max_ptrs": 16})
        gm = imgsz // 16 // self.memory_pool
        return {"kind": "tracker", **capacity, "memory_shape": [self.mem_dim, gm, gm], "ptr_dim": self.dim,
                "num_maskmem": self.num_maskmem}

    def dense_pe(self) -> torch.Tensor:
        return self.sam_prompt_encoder.pe_layer.dense(self.grid).unsqueeze(0)

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(B, 3, S, S) normalised -> ``vision_features`` (B, C, g, g) and the decoder's skip features
        (B, C/8, 4g, 4g) and (B, C/4, 2g, 2g) (None without high-res features)."""
        if self.one_scale:
            skips = self.skip_stem(images) if self.skip_stem is not None else (None, None)
            return self.image_encoder(images), *skips
        feat0, feat1, features = self.image_encoder(images)
        return features, self.sam_mask_decoder.conv_s0(feat0), self.sam_mask_decoder.conv_s1(feat1)

    def without_memory(self, features: torch.Tensor) -> torch.Tensor:
        """A prompted first frame is not conditioned on memory: SAM 2 adds ``no_mem_embed`` instead."""
        return features + self.no_mem_embed.reshape(1, -1, 1, 1)

    def condition(self, features, mem_features, mem_tpos, mem_valid, obj_ptrs, ptr_tpos, ptr_valid):
        """Memory-conditioned features (B, C, g, g) from ``features`` (B, C, g, g); M memory slots
        ``mem_features`` (B, M, C_mem, gm, gm) (gm = g / memory_pool) with ``mem_tpos`` (B, M) int64, the index into
        ``maskmem_tpos_enc`` (num_maskmem - 1 for a conditioning frame, 0 for the previous frame); P object
        pointers (B, P, C) with ``ptr_tpos`` (B, P), the signed frame distance divided by the largest one;
        ``mem_valid`` and ``ptr_valid`` are 1 for a filled slot and 0 for an empty one."""
        b, c, g, _ = features.shape
        n = mem_features.shape[-1] * mem_features.shape[-2]  # tokens per memory slot
        m, p = mem_features.shape[1], obj_ptrs.shape[1]
        split = c // self.mem_dim  # each pointer enters as C/C_mem tokens of C_mem channels
        x = features.flatten(2).transpose(1, 2)
        memory = mem_features.flatten(3).transpose(2, 3).reshape(b, m * n, self.mem_dim)
        # (B, M, C_mem): a one-hot product, not an index, so that a converter that feeds every input as float
        # (PT2E on LiteRT quantizes graph inputs) still picks the right rows; the rounding undoes the input's
        # quantization
        slots = torch.arange(self.num_maskmem, dtype=x.dtype, device=x.device)
        onehot = (mem_tpos.to(x.dtype).round().unsqueeze(-1) == slots).to(x.dtype)
        tpos = onehot @ self.maskmem_tpos_enc.reshape(self.num_maskmem, self.mem_dim)
        memory_pos = (self.memory_pos.unsqueeze(1) + tpos.unsqueeze(2)).reshape(b, m * n, self.mem_dim)
        ptr_tokens = obj_ptrs.reshape(b, p * split, self.mem_dim)
        ptr_pos = self.obj_ptr_tpos_proj(sine_1d(ptr_tpos, c)).repeat_interleave(split, dim=1)
        valid = torch.cat([mem_valid.unsqueeze(-1).expand(b, m, n).reshape(b, m * n),
                           ptr_valid.unsqueeze(-1).expand(b, p, split).reshape(b, p * split)], dim=1)
        bias = ((1.0 - valid.to(x.dtype)) * MASK_BIAS).reshape(b, 1, 1, -1)
        out = self.memory_attention(x, self.vision_pos, torch.cat([memory, ptr_tokens], 1),
                                    torch.cat([memory_pos, ptr_pos], 1), self.rope_cos, self.rope_sin, m * n, bias,
                                    (self.key_cos, self.key_sin))
        return out.transpose(1, 2).reshape(b, c, g, g)

    def decode(self, features, feat_s0, feat_s1, coords, labels, mask_prompt=None, mask_weight=None, dense_pe=None):
        """Conditioned features (B, C, g, g) and skip features, points (B, N, 2) in input pixels with labels
        (B, N) (-1 SAM 2's padding token, ``UNUSED_SLOT`` a masked spare slot) -> mask logits (B, 4, 4g, 4g)
        (NO_OBJ_SCORE where the object is absent), IoU predictions (B, 4), object pointers (B, 4, C), one per
        mask token, and object score logits (B, 1). ``mask_prompt`` (B, 1, S, S) in {0, 1} is a mask prompt
        where ``mask_weight`` (B, 1) is 1; where it is 0 the decoder sees SAM 2's no-mask embedding (a static
        graph takes both always). ``dense_pe``: ``self.dense_pe()``, computed once by callers that decode every
        frame."""
        b = coords.shape[0]
        labels = labels.to(coords.dtype)
        sparse = self.sam_prompt_encoder(coords, labels)
        dense = self.sam_prompt_encoder.dense(None, b, self.grid)
        if mask_prompt is not None:
            w = (mask_weight if mask_weight is not None else torch.ones(b, 1)).to(dense.dtype)[:, :, None, None]
            masked = self.sam_prompt_encoder.dense(self.mask_downsample(mask_prompt.to(dense.dtype)), b, self.grid)
            dense = w * masked + (1 - w) * dense
        pe = self.dense_pe() if dense_pe is None else dense_pe
        if feat_s0 is not None:
            feat_s0, feat_s1 = feat_s0.expand(b, -1, -1, -1), feat_s1.expand(b, -1, -1, -1)
        masks, iou, tokens, score = self.sam_mask_decoder(features.expand(b, -1, -1, -1), pe, sparse, dense,
                                                          feat_s0, feat_s1, labels != UNUSED_SLOT)
        present = (score > 0).to(masks.dtype)  # (B, 1)
        masks = torch.where(present[:, :, None, None] > 0, masks, torch.full_like(masks, NO_OBJ_SCORE))
        ptrs = self.obj_ptr_proj(tokens)
        ptrs = present[:, :, None] * ptrs + (1 - present[:, :, None]) * self.no_obj_ptr
        return masks, iou, ptrs, score

    def encode_memory(self, features, mask_logits, binarize, object_score_logits):
        """``vision_features`` (B, C, g, g), the kept low-res mask logits (B, 1, 4g, 4g), ``binarize`` (B, 1):
        1 where the mask came from prompt points (SAM 2 then thresholds it instead of a sigmoid), and the
        object score (B, 1) -> memory features (B, C_mem, gm, gm), pooled by ``memory_pool``."""
        high = F.interpolate(mask_logits, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        mask = torch.where(binarize[:, :, None, None] > 0, (high > 0).to(high.dtype), torch.sigmoid(high))
        memory = self.memory_encoder(features, mask * 20.0 - 10.0)
        absent = (object_score_logits <= 0).to(memory.dtype)[:, :, None, None]
        if self.memory_pool > 1:
            memory = F.avg_pool2d(memory, self.memory_pool)
        return memory + absent * self.no_obj_embed_spatial.reshape(1, -1, 1, 1)


# the official configs (sam2.1_hiera_t.yaml / sam2.1_hiera_s.yaml), as the registry's variants hold them
SAM2_CONFIGS = {name: dict(get_variant(name).config) for name in ("sam2.1-hiera-tiny", "sam2.1-hiera-small")}


IMAGE_MEAN, IMAGE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # of image / 255


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 RGB -> (B, 3, S, S) as SAM 2 normalises it."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN, device=x.device).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=x.device).reshape(1, 3, 1, 1)
    return (x - mean) / std


def torch_graphs(model: Sam2) -> dict:
    """The four tracker graphs (``edgevision.tracker``) run by the PyTorch model, on NumPy arrays: the FP32
    reference that exported graphs are checked against."""
    model.eval()
    with torch.no_grad():
        dense_pe = model.dense_pe()  # after the weights are loaded: it derives from a loaded buffer

    def tensors(arrays: dict) -> dict:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    @torch.no_grad()
    def image_encoder(a: dict) -> dict:
        features, s0, s1 = model.encode_image(normalise(tensors(a)["image"]))
        out = {"vision_features": features.numpy(), "no_memory_features": model.without_memory(features).numpy()}
        if s0 is not None:
            out.update(high_res_feat0=s0.numpy(), high_res_feat1=s1.numpy())
        return out

    @torch.no_grad()
    def memory_attention(a: dict) -> dict:
        t = tensors(a)
        out = model.condition(t["vision_features"], t["mem_features"], t["mem_tpos"], t["mem_valid"],
                              t["obj_ptrs"], t["ptr_tpos"], t["ptr_valid"])
        return {"conditioned_features": out.numpy()}

    @torch.no_grad()
    def mask_decoder(a: dict) -> dict:
        t = tensors(a)
        masks, iou, ptrs, score = model.decode(t["image_embeddings"], t.get("high_res_feat0"),
                                               t.get("high_res_feat1"), t["point_coords"], t["point_labels"],
                                               t.get("mask_prompt"), t.get("mask_weight"), dense_pe=dense_pe)
        return {"low_res_masks": masks.numpy(), "iou_predictions": iou.numpy(), "obj_ptrs": ptrs.numpy(),
                "object_score_logits": score.numpy()}

    @torch.no_grad()
    def memory_encoder(a: dict) -> dict:
        t = tensors(a)
        out = model.encode_memory(t["vision_features"], t["mask_logits"], t["binarize"], t["object_score_logits"])
        return {"memory_features": out.numpy()}

    return {"image_encoder": image_encoder, "memory_attention": memory_attention, "mask_decoder": mask_decoder,
            "memory_encoder": memory_encoder}
