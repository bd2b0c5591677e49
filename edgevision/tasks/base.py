"""What a task plug-in provides. Everything task-specific lives in one Task subclass in tasks/<name>.py:
the postprocessors of its heads and its result type, the evaluation accumulator and metrics, the golden-output
summary, the overlay and the JSONL fields, the synthetic eval set and the default recipe. Nothing outside tasks/
compares a task name.

Device-side safe: no PyTorch, no models/; metric libraries are imported when an accumulator is built.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class Accumulator(ABC):
    """Streams results into a task metric (points, 0-100)."""

    @abstractmethod
    def add(self, truth, result) -> None:
        """``truth`` is a Sample from an eval set, or another runner's result (agreement)."""

    @abstractmethod
    def result(self) -> dict[str, float]: ...


class Task(ABC):
    name: str = ""
    result_type: type = object
    # head kind (the bundle's head["kind"]) -> "module:Class" of its postprocessor
    postprocessors: Mapping[str, str] = {}
    # (metric that agreement is measured in, the name it is reported under)
    agreement: tuple[str, str] = ("", "")
    json_key: str = "result"  # the JSONL field of `edgevision run`
    needs_masks: bool = False  # eval sets must carry per-pixel labels
    plot_marker: str = "o"  # in the matrix report's accuracy-vs-latency plot
    default_recipe: str | Mapping[str, Any] = ""  # a file under recipes/, or the recipe itself

    # ------------------------------------------------------------------------------------- postprocessing
    def make_postprocessor(self, head: dict, imgsz: int, **options):
        try:
            module, _, cls = self.postprocessors[head["kind"]].partition(":")
        except KeyError:
            raise ValueError(f"task {self.name} has no postprocessor for head kind '{head.get('kind')}'; known: "
                             f"{', '.join(self.postprocessors)}") from None
        return getattr(importlib.import_module(module), cls)(head, imgsz, **options)

    def run_options(self, recipe, **overrides) -> dict:
        """Postprocessor options for `run` and the predictor (thresholds), from the bundle's recipe."""
        return {}

    def eval_options(self, recipe) -> dict:
        """Postprocessor options for evaluation (e.g. the whole score range for mAP)."""
        return {}

    # ---------------------------------------------------------------------------------------- evaluation
    @abstractmethod
    def accumulator(self, labels: Sequence[str], recipe) -> Accumulator: ...

    def synthetic_eval_set(self, imgsz: int, stride: int, count: int, seed: int):
        """The recipe's synthetic eval set: scenes at the model's input size."""
        from edgevision.data.samples import synthetic_scenes

        return synthetic_scenes(imgsz, stride, count, seed, semantic=self.needs_masks)

    # -------------------------------------------------------------------------------------------- golden
    def golden_arrays(self, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """What `golden.npz` stores of the FP32 outputs (and what the artifact's outputs are reduced to for the
        comparison): by default every output whole, in fp16."""
        return {f"output_{k}": out.astype(np.float16) for k, out in enumerate(outputs)}

    def golden_similarity(self, stored: dict[str, np.ndarray], i: int, outputs: list[np.ndarray]):
        """(reference arrays, artifact arrays) for sample ``i``, compared by cosine / max error / SQNR."""
        ref = [stored[f"output_{k}"][i : i + 1].astype(np.float32) for k in range(len(outputs))]
        return ref, outputs

    def golden_results(self, stored: dict[str, np.ndarray], i: int, outputs: list[np.ndarray], post):
        """(reference result, artifact result) for sample ``i``: the agreement metric's inputs."""
        ref = [stored[f"output_{k}"][i].astype(np.float32) for k in range(len(outputs))]
        return post(ref), post([o[0] for o in outputs])

    # ------------------------------------------------------------------------------------------- output
    @abstractmethod
    def draw(self, frame_bgr: np.ndarray, result, labels: Sequence[str]) -> np.ndarray:
        """The overlay, in place on a BGR frame."""

    def to_json(self, result, labels: Sequence[str]) -> Any:
        return result.to_json(labels)
