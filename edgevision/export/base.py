"""What every target exporter receives and returns."""

from __future__ import annotations

import contextlib
import io

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.bundle import GraphSpec
from edgevision.config import Recipe, TargetProfile


@dataclass
class ExportContext:
    """One graph's export: its FP32 ONNX graph, what to turn it into, and where."""

    onnx_fp32: Path  # the graph's FP32 ONNX export, named inputs, static shapes
    workdir: Path  # the staging bundle directory; the artifact goes here
    precision: str  # this graph's precision
    profile: TargetProfile
    recipe: Recipe
    imgsz: int
    # int8: one feed per calibration image, keyed by the graph's input names (batch 1). The first graph's image
    # is the calibration image; a later graph's inputs are what the FP32 graphs before it made of that image.
    calibration: list[dict[str, np.ndarray]] | None
    wrapper: Any = None  # the graph's torch module, for converters that start from PyTorch
    graph: Any = None  # models.wrappers.GraphDef: name, input specs, output names
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The graph's name; its artifact files are named after it (model.onnx, image_encoder.xml, ...)."""
        return self.graph.name if self.graph is not None else "model"

    @property
    def calibration_feeds(self) -> list[dict[str, np.ndarray]]:
        return (self.calibration or [])[: self.recipe.quantization.subset_size]


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


def bind_artifact_names(spec: GraphSpec, info) -> GraphSpec:
    """Record the artifact's own tensor names where the converter chose them (LiteRT signatures)."""
    names = (info.io or {}).get("names")
    if not names:
        return spec
    inputs = [t.model_copy(update={"artifact_name": n}) for t, n in zip(spec.inputs, names["inputs"])]
    outputs = [t.model_copy(update={"artifact_name": n}) for t, n in zip(spec.outputs, names["outputs"])]
    return spec.model_copy(update={"inputs": inputs, "outputs": outputs})
