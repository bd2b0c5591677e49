"""What every target exporter receives and returns."""

from __future__ import annotations

import contextlib
import io

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevision.config import Recipe, TargetProfile
from edgevision.data.datasets import CalibrationSet


@dataclass
class ExportContext:
    onnx_fp32: Path  # the uint8-input FP32 ONNX graph, static shapes
    workdir: Path  # the staging bundle directory; the artifact goes here
    precision: str
    profile: TargetProfile
    recipe: Recipe
    imgsz: int
    calibration: CalibrationSet | None  # present for int8
    wrapper: Any = None  # the uint8-input torch module, for converters that start from PyTorch
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArtifactInfo:
    file: str  # name inside the bundle
    format: str
    quantization: dict[str, Any] | None = None
    toolchain: dict[str, str] = field(default_factory=dict)
    io: dict[str, Any] | None = None  # the artifact's own I/O when it differs from the bundle's uint8 contract


@contextlib.contextmanager
def quiet_progress():
    """Silence a tool's own progress bars and prints; edgevision reports progress itself."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield
