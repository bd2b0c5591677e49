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

from edgevision.runtime.batches import run_in_batches


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
    # further agreement figures, reported but not gated unless a recipe names them: metric -> reported name
    agreement_extras: Mapping[str, str] = {}
    json_key: str = "result"  # the JSONL field of `edgevision run`
    needs_masks: bool = False  # eval sets must carry per-pixel labels
    plot_marker: str = "o"  # in the matrix report's accuracy-vs-latency plot
    default_recipe: str | Mapping[str, Any] = ""  # a file under recipes/, or the recipe itself
    # The classes of the synthetic eval set's ground truth: a model with other labels is evaluated unlabelled
    # (agreement with FP32 only). None: the set is labelled in whatever classes the model has.
    synthetic_labels: tuple[str, ...] | None = None
    # The graph a frame goes through and its image input; postprocessors get that graph's outputs by name.
    graph: str = "model"
    image_input: str = "image"

    # ------------------------------------------------------------------------------------------ inference
    def infer(self, runner, batch: np.ndarray) -> dict[str, np.ndarray]:
        """(N, S, S, 3) uint8 images -> the outputs the postprocessor reads, by name. By default the task's graph
        on the image; a task whose model is several graphs chains them here. Batches larger than the runner's
        ``max_batch`` are split."""
        return run_in_batches(runner, self.graph, {self.image_input: batch})

    def infer_eval(self, runner, batch: np.ndarray, samples, geometries, head: dict):
        """Inference during evaluation, where the samples (and their ground truth) are known: by default
        ``infer``. A task whose inputs depend on the sample (prompts from its objects) returns a list, one dict
        of outputs per image (each with a leading dimension of 1)."""
        return self.infer(runner, batch)

    def evaluate_runners(self, runners: Mapping[str, Any], eval_set, io, progress=None) -> dict | None:
        """Evaluation of a task whose samples are not single images (a tracker's clips): a dict with ``metrics``
        (runner -> metric -> value), ``agreement``, ``images`` (samples evaluated) and optionally ``worst`` and
        ``similarity``. None (the default): images, one at a time, through ``infer_eval`` and the
        postprocessor."""
        return None

    def bench_calls(self, runner, meta, frame_rgb: np.ndarray) -> dict[str, Any] | None:
        """What `bench` times for a task whose inference is not one image through one graph: zero-argument
        callables ``artifact`` (one inference at the network's input size) and ``end_to_end`` (``frame_rgb``, a
        camera-sized frame, in; the result out). None (the default): the task's graph on the preprocessed frame,
        and the Predictor end to end."""
        return None

    def eval_set_from(self, path):
        """``check --data PATH`` in the task's own format (a tracker's clip folders), or None for the usual
        image folders and COCO files."""
        return None

    def rollout_feeds(self, graphs: Mapping[str, Any], head: dict, imgsz: int, count: int, seed: int, data=None,
                      say=None) -> tuple[dict[str, list[dict]], str] | None:
        """Calibration and golden inputs for a model whose graphs do not chain on one image (a tracker's memory
        attention takes what earlier frames left): per graph up to ``count`` feeds recorded while running
        ``graphs`` (name -> callable on NumPy dicts) on ``data`` or synthetic data, and a description of the
        source. None (the default): export feeds each image through the graphs in order."""
        return None

    def similarity_outputs(self, outputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """The outputs whose reference/artifact similarity is reported (all by default)."""
        return outputs

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
    def agreement_figures(self, result: Mapping[str, float]) -> dict[str, float]:
        """An agreement accumulator's result under the names reports use: the task's agreement metric first."""
        base, key = self.agreement
        return {key: result[base], **{name: result[m] for m, name in self.agreement_extras.items() if m in result}}

    @abstractmethod
    def accumulator(self, labels: Sequence[str], recipe) -> Accumulator: ...

    def synthetic_eval_set(self, imgsz: int, stride: int, count: int, seed: int):
        """The recipe's synthetic eval set: scenes at the model's input size."""
        from edgevision.data.samples import synthetic_scenes

        return synthetic_scenes(imgsz, stride, count, seed, semantic=self.needs_masks)

    # -------------------------------------------------------------------------------------------- golden
    def golden_arrays(self, graph: str, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What `golden.npz` stores of one graph's FP32 outputs (and what the artifact's outputs are reduced to
        for the comparison), keyed by a name: by default every output whole, in fp16, under its own name."""
        return {name: out.astype(np.float16) for name, out in outputs.items()}

    def golden_similarity(self, graph: str, stored: Mapping[str, np.ndarray], i: int,
                          outputs: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
        """(reference arrays, artifact arrays), keyed alike, for sample ``i`` of ``graph``: compared by cosine,
        max error and SQNR."""
        art = self.golden_arrays(graph, outputs)
        return ({k: stored[k][i : i + 1].astype(np.float32) for k in art},
                {k: v.astype(np.float32) for k, v in art.items()})

    def golden_results(self, stored: Mapping[str, np.ndarray], i: int, outputs: Mapping[str, np.ndarray], post):
        """(reference result, artifact result) for sample ``i`` of the task's graph: the agreement metric's
        inputs."""
        ref = {k: stored[k][i].astype(np.float32) for k in outputs}
        return post(ref), post({k: v[0] for k, v in outputs.items()})

    # ------------------------------------------------------------------------------------------- output
    @abstractmethod
    def draw(self, frame_bgr: np.ndarray, result, labels: Sequence[str]) -> np.ndarray:
        """The overlay, in place on a BGR frame."""

    def to_json(self, result, labels: Sequence[str]) -> Any:
        return result.to_json(labels)
