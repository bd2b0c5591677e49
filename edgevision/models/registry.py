"""The model registry: every exportable variant, described without importing PyTorch.

A variant differs from its siblings only in hyperparameters and bundled weights; the family class is named
by import path and loaded on first use, so device-side code can list variants without PyTorch. Adding a
model is a new file under models/ plus one ``ModelVariant`` line in ``VARIANTS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.data.shapes import SHAPE_CLASSES
from edgevision.errors import BadInput
from edgevision.ops.preprocess import Preprocess

if TYPE_CHECKING:
    from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
IMAGENET = Preprocess(resize="letterbox", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
IMAGENET_PLAIN = Preprocess(resize="plain", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
IMAGENET_INDEX = tuple(str(i) for i in range(1000))  # classes named by index unless --labels names them
_VIT = "edgevision.models.vit:VisionTransformer"
_EFFICIENT_SAM = "edgevision.models.efficient_sam:EfficientSam"
_SAM2 = "edgevision.models.sam2:Sam2"
# EfficientSAM normalises image / 255 with ImageNet mean/std after a plain (non-letterbox) resize to the square
SAM_PLAIN = IMAGENET_PLAIN


@dataclass(frozen=True)
class ModelVariant:
    name: str
    family: str  # "module:Class" of the nn.Module
    task: str  # detect | segment | classify | ...
    imgsz: int
    stride: int
    labels: tuple[str, ...]
    preprocess: Preprocess
    config: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None  # file name under models/weights/
    summary: str = ""
    # the hyperparameters travel in the checkpoint (a distilled student): ``config`` is only the default for
    # random weights, and the checkpoint's ``edgevision_config`` overrides it
    config_in_weights: bool = False
    # the side of the synthetic scenes it was trained on, when it runs at a larger input: its eval and default
    # calibration sets render those scenes, and the runtime resizes them as it resizes any image
    scene_size: int | None = None

    def scenes_at(self, imgsz: int) -> int:
        """The side of the synthetic scenes that evaluate and calibrate this model at input size ``imgsz``."""
        return self.scene_size or imgsz

    @property
    def weights_path(self) -> Path | None:
        return WEIGHTS_DIR / self.weights if self.weights else None

    @property
    def has_weights(self) -> bool:
        path = self.weights_path
        return path is not None and path.is_file()

    def model_class(self) -> type[nn.Module]:
        module, _, cls = self.family.partition(":")
        return getattr(importlib.import_module(module), cls)

    def build(self, num_classes: int | None = None, config: Mapping[str, Any] | None = None) -> nn.Module:
        """A randomly initialised model; ``num_classes`` defaults to the variant's label count; ``config``
        replaces the variant's hyperparameters (a student checkpoint's own)."""
        return self.model_class()(num_classes=num_classes or len(self.labels), **(config or self.config))


VARIANTS: tuple[ModelVariant, ...] = (
    ModelVariant(
        "fast-yolo", "edgevision.models.fast_yolo:FastYOLO", "detect", imgsz=448, stride=64,
        labels=VOC_CLASSES, preprocess=Preprocess(resize="plain"),
        config={"num_pools": 6, "boxes_per_cell": 2},
        summary="Fast YOLO as in the YOLOv1 paper: 9 conv layers, S=7, B=2, C=20 (pass --weights)",
    ),
    ModelVariant(
        "fast-yolo-demo", "edgevision.models.fast_yolo:FastYOLO", "detect", imgsz=224, stride=32,
        labels=SHAPE_CLASSES, preprocess=Preprocess(resize="letterbox"),
        config={"num_pools": 5, "boxes_per_cell": 2, "widths": (16, 32, 64, 96, 128, 192, 256, 256, 192)},
        weights="fast-yolo-demo.pt",
        summary="reduced-width Fast YOLO trained on edgevision's synthetic shapes",
    ),
    ModelVariant(
        "fast-yolo-demo-outlier", "edgevision.models.fast_yolo:FastYOLO", "detect", imgsz=224, stride=32,
        labels=SHAPE_CLASSES, preprocess=Preprocess(resize="letterbox"),
        config={"num_pools": 5, "boxes_per_cell": 2, "widths": (16, 32, 64, 96, 128, 192, 256, 256, 192),
                "outlier": (5, 7, 80.0)},
        weights="fast-yolo-demo.pt",
        summary="fast-yolo-demo with one activation channel scaled x80 (same FP32 output): breaks plain INT8",
    ),
    ModelVariant(
        "mobile-unet", "edgevision.models.mobile_unet:MobileUNet", "segment", imgsz=256, stride=32,
        labels=("background", *SHAPE_CLASSES), preprocess=IMAGENET,
        weights="mobile-unet.pt",
        summary="MobileNetV2-style U-Net trained on edgevision's synthetic shapes",
    ),
    ModelVariant(
        "deit-tiny-demo", _VIT, "classify", imgsz=112, stride=16, labels=SHAPE_CLASSES, preprocess=IMAGENET_PLAIN,
        config={"embed_dim": 192, "num_heads": 3, "img_size": 112}, weights="deit-tiny-demo.pt",
        summary="DeiT-Tiny (12 blocks, dim 192) at 112 px trained on the synthetic shapes (FP32 top-1 95.35)",
    ),
    ModelVariant(
        "deit-tiny", _VIT, "classify", imgsz=224, stride=16, labels=IMAGENET_INDEX, preprocess=IMAGENET_PLAIN,
        config={"embed_dim": 192, "num_heads": 3},
        summary="DeiT-Tiny (timm deit_tiny_patch16_224 keys; pass --weights .safetensors/.pth)",
    ),
    ModelVariant(
        "deit-small", _VIT, "classify", imgsz=224, stride=16, labels=IMAGENET_INDEX, preprocess=IMAGENET_PLAIN,
        config={"embed_dim": 384, "num_heads": 6},
        summary="DeiT-Small (timm deit_small_patch16_224 keys; pass --weights)",
    ),
    ModelVariant(
        "deit-tiny-distilled", _VIT, "classify", imgsz=224, stride=16, labels=IMAGENET_INDEX,
        preprocess=IMAGENET_PLAIN, config={"embed_dim": 192, "num_heads": 3, "distilled": True},
        summary="DeiT-Tiny with the distillation token; eval averages its two heads (timm keys; pass --weights)",
    ),
    ModelVariant(
        "efficient-sam-vitt", _EFFICIENT_SAM, "prompt-segment", imgsz=1024, stride=16, labels=("object",),
        preprocess=SAM_PLAIN, config={"embed_dim": 192, "num_heads": 3},
        summary="EfficientSAM ViT-T: promptable masks, image_encoder + mask_decoder graphs (official "
                "efficient_sam_vitt.pt; pass --weights)",
    ),
    ModelVariant(
        "efficient-sam-demo", _EFFICIENT_SAM, "prompt-segment", imgsz=512, stride=16, labels=("object",),
        preprocess=SAM_PLAIN, weights="efficient-sam-demo.pt", scene_size=256,
        config={"img_size": 512, "embed_dim": 192, "num_heads": 3, "depth": 6, "pos_grid": 16, "neck_dim": 128,
                "decoder_heads": 4, "decoder_mlp_dim": 512, "upscale_dims": (32, 16)},
        summary="EfficientSAM-style ViT (6 blocks, dim 192) with a slimmer decoder, trained at 256 px on the "
                "synthetic scenes' instance masks and run at 512 px (a 128 x 128 mask grid)",
    ),
    ModelVariant(
        "efficient-sam-student", _EFFICIENT_SAM, "prompt-segment", imgsz=512, stride=16, labels=("object",),
        preprocess=SAM_PLAIN, config_in_weights=True,
        config={"img_size": 512, "embed_dim": 96, "num_heads": 3, "depth": 6, "pos_grid": 32},
        summary="An encoder distilled by `edgevision distill` with its teacher's prompt encoder and decoder (pass "
                "--weights STUDENT.pt; its hyperparameters and input size are in the file)",
    ),
    ModelVariant(
        "efficient-sam-vits", _EFFICIENT_SAM, "prompt-segment", imgsz=1024, stride=16, labels=("object",),
        preprocess=SAM_PLAIN, config={"embed_dim": 384, "num_heads": 6},
        summary="EfficientSAM ViT-S (official efficient_sam_vits.pt, unzipped; pass --weights)",
    ),
    ModelVariant(
        "sam-track-demo", _SAM2, "track", imgsz=256, stride=16, labels=("object",), preprocess=IMAGENET_PLAIN,
        weights="sam-track-demo.pt",
        config={"img_size": 256, "dim": 128, "mem_dim": 64, "memory_layers": 2, "memory_pool": 2,
                "memory_ffn_dim": 512, "decoder_mlp_dim": 512,
                "vit": {"embed_dim": 192, "depth": 6, "num_heads": 3, "pos_grid": 16}, "skip_stem": True},
        summary="EfficientTAM-style tracker: efficient-sam-demo's ViT encoder (6 blocks, dim 192) with SAM 2 "
                "memory modules (dim 128, 2 memory-attention layers, memory pooled 2x2) and a conv stem for the "
                "decoder's high-res skips, trained on synthetic clips",
    ),
    ModelVariant(
        "sam2.1-hiera-tiny", _SAM2, "track", imgsz=1024, stride=32, labels=("object",), preprocess=IMAGENET_PLAIN,
        config={"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 7, 2), "global_att_blocks": (5, 7, 9)},
        summary="SAM 2.1 Hiera-T video tracker: image_encoder, memory_attention, mask_decoder and memory_encoder "
                "graphs, memory bank on the CPU (official sam2.1_hiera_tiny.pt; pass --weights)",
    ),
    ModelVariant(
        "sam2.1-hiera-small", _SAM2, "track", imgsz=1024, stride=32, labels=("object",), preprocess=IMAGENET_PLAIN,
        config={"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 11, 2), "global_att_blocks": (7, 10, 13)},
        summary="SAM 2.1 Hiera-S video tracker (official sam2.1_hiera_small.pt; pass --weights)",
    ),
)  # fmt: skip

_BY_NAME = {v.name: v for v in VARIANTS}


def register_variant(variant: ModelVariant) -> ModelVariant:
    """Add a variant at run time (a plug-in package, a test); replaces one of the same name."""
    _BY_NAME[variant.name] = variant
    return variant


def get_variant(name: str) -> ModelVariant:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise BadInput(f"unknown model '{name}'; run `edgevision models` to list them "
                       f"({', '.join(_BY_NAME)})") from None


def bundle_scene_size(meta) -> int:
    """The side of the synthetic scenes that evaluate a bundle: the one its export recorded (a student's is its
    teacher's), else its variant's at the bundle's input size (bundles from before the record)."""
    return meta.scene_size or get_variant(meta.model).scenes_at(meta.imgsz)


def list_variants() -> tuple[ModelVariant, ...]:
    return tuple(_BY_NAME.values())
