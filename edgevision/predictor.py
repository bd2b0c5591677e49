"""Image in, result out: preprocess -> runner -> postprocess, with no PyTorch anywhere on the path.

This is the Python API most users want:

    from edgevision import Predictor
    with Predictor("bundles/fast-yolo-demo-cpu-int8") as p:
        dets = p.predict(image_rgb)
"""

from __future__ import annotations

import os

import numpy as np

from edgevision.bundle import Bundle, load_bundle
from edgevision.ops.preprocess import Geometry, prepare
from edgevision.runtime.base import Runner, open_runner
from edgevision.tasks import get_task


class Predictor:
    def __init__(self, bundle: Bundle | str | os.PathLike, *, runtime: str | None = None,
                 threads: int | None = None, conf: float | None = None, iou: float | None = None,
                 runner: Runner | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        meta = self.bundle.meta
        self.runner = runner or open_runner(self.bundle, runtime, threads)
        from edgevision.config import bundle_recipe

        self.task = get_task(meta.task)
        options = self.task.run_options(bundle_recipe(meta), conf=conf, iou=iou)
        self.postprocess = self.task.make_postprocessor(meta.head, meta.imgsz, **options)
        self.labels = meta.labels

    def preprocess(self, image_rgb: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """(H, W, 3) uint8 RGB -> (1, S, S, 3) network input and its geometry."""
        meta = self.bundle.meta
        net, geometry = prepare(image_rgb, meta.imgsz, meta.preprocess.resize)  # BGR models swap in-graph
        return np.ascontiguousarray(net[None]), geometry

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """(1, S, S, 3) uint8 -> the task graph's outputs by name."""
        return self.task.infer(self.runner, batch)

    def predict(self, image_rgb: np.ndarray):
        batch, geometry = self.preprocess(image_rgb)
        outputs = self.infer(batch)
        return self.postprocess({k: v[0] for k, v in outputs.items()}, geometry)

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
