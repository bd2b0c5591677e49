"""Image -> model input, in NumPy/OpenCV only, so devices run it without PyTorch.

Bundles take uint8 NHWC RGB input: mean/std normalisation is folded into the exported graph, so the host
side only resizes (plain or letterbox) and reorders channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

PAD_VALUE = 114
INTER_NEAREST = 0  # cv2.INTER_NEAREST


class Preprocess(BaseModel):
    """How a frame becomes the network input. ``mean``/``std`` are in 0-255 units, RGB order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resize: Literal["plain", "letterbox"] = "letterbox"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    colour: Literal["RGB", "BGR"] = "RGB"


@dataclass(frozen=True)
class Geometry:
    """Maps network-input pixels back to source-image pixels: src = (net - pad) / scale."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in network pixels -> source pixels, clipped to the image."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out

    def map_to_source(self, label_map: np.ndarray, interpolation: int = INTER_NEAREST) -> np.ndarray:
        """Crop the padding off a network-resolution map and resize it to the source size."""
        import cv2

        h, w = label_map.shape[:2]
        y0, x0 = int(round(self.pad_y)), int(round(self.pad_x))
        y1 = int(round(self.pad_y + self.src_h * self.scale_y))
        x1 = int(round(self.pad_x + self.src_w * self.scale_x))
        crop = label_map[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
        return cv2.resize(crop, (self.src_w, self.src_h), interpolation=interpolation)


def prepare(image_rgb: np.ndarray, size: int, mode: str = "letterbox") -> tuple[np.ndarray, Geometry]:
    """(H, W, 3) uint8 RGB -> (size, size, 3) uint8 network image and its geometry."""
    import cv2  # here, not at module level: the CLI reads Preprocess to validate arguments before cv2 loads

    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image_rgb.shape} {image_rgb.dtype}")
    h, w = image_rgb.shape[:2]
    if mode == "plain":
        if (h, w) == (size, size):
            return image_rgb, Geometry(1.0, 1.0, 0.0, 0.0, w, h)
        out = cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_LINEAR)
        return out, Geometry(size / w, size / h, 0.0, 0.0, w, h)
    if (h, w) == (size, size):
        return image_rgb, Geometry(1.0, 1.0, 0.0, 0.0, w, h)
    scale = min(size / w, size / h)
    nw, nh = int(round(w * scale)), int(round(h * scale))
    px, py = (size - nw) // 2, (size - nh) // 2
    if (nw, nh) == (size, size):  # a square image of another size: no padding, just the resize
        out = cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_LINEAR)
        return out, Geometry(size / w, size / h, 0.0, 0.0, w, h)
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    out[py : py + nh, px : px + nw] = cv2.resize(image_rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, Geometry(nw / w, nh / h, float(px), float(py), w, h)


def read_image(path) -> np.ndarray:
    """Read any OpenCV-readable image as uint8 RGB; grey and alpha images become 3-channel RGB."""
    import cv2

    data = np.fromfile(str(path), np.uint8)  # unlike cv2.imread, handles non-ASCII Windows paths
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
