"""FP32 accuracy of a model on its recipe's synthetic eval set: the figures README and RESULTS quote.

    python scripts/eval_synthetic.py efficient-sam-demo                              # the bundled weights
    python scripts/eval_synthetic.py efficient-sam-student --weights student.pt      # a distilled student
    python scripts/eval_synthetic.py sam-track-demo --count 50                       # clips, for a tracker
    python scripts/eval_synthetic.py efficient-sam-student --weights s.pt --scene-size 384   # other scenes

Promptable segmenters default to the issue's 500 held-out scenes, trackers to 50 clips, the rest to the
recipe's eval count. A student checkpoint runs at its own input size, on the scenes of the teacher it names
(efficient-sam-demo's are 256 px, at a 512 px input), or at its input size when the teacher has no scene size
of its own; ``--scene-size`` overrides either.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgevision.models.loading import build_model
from edgevision.models.registry import get_variant


def report_accuracy(variant, model, count: int | None = None, scene_size: int | None = None) -> dict:
    """Print and return the FP32 metrics of ``model`` (a ``variant``) on the synthetic eval set."""
    if variant.task == "track":
        from edgevision.training_track import evaluate_tracker

        return evaluate_tracker(model, count or 50)  # the bar: 50 held-out clips
    from edgevision.check.evaluate import ModelIO, evaluate
    from edgevision.check.reference import PyTorchRunner
    from edgevision.config import load_recipe
    from edgevision.data.datasets import synthetic_eval_set

    recipe = load_recipe(variant.name, variant.task)
    count = count or (500 if variant.task == "prompt-segment" else recipe.eval.count)  # the 500 scenes
    imgsz = getattr(model, "img_size", None) or variant.imgsz
    scene_size = scene_size or getattr(model, "scene_size", None) or variant.scenes_at(imgsz)  # a student: its teacher's
    data = synthetic_eval_set(scene_size, variant.stride, count, recipe.eval.seed, variant.task)
    io = ModelIO(variant.task, imgsz, variant.preprocess.resize, model.head_spec(imgsz), variant.labels, recipe)
    outcome = evaluate({"fp32": PyTorchRunner(model.float(), variant.preprocess, imgsz=imgsz)}, data, io)
    print(f"{variant.name} FP32 on {data.description}: {outcome.metrics['fp32']}")
    return outcome.metrics["fp32"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--weights", type=Path, help="a checkpoint (default: the bundled weights)")
    ap.add_argument("--count", type=int, help="scenes (clips for a tracker)")
    ap.add_argument("--scene-size", type=int, help="side of the scenes (default: the model's own scene size)")
    args = ap.parse_args()
    variant = get_variant(args.model)
    report_accuracy(variant, build_model(variant, weights=args.weights), args.count, args.scene_size)


if __name__ == "__main__":
    main()
