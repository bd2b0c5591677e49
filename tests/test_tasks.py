"""A new task is one module plus one registry line: this test defines a toy task and a toy model here, registers
both from inside the test, and exports, checks and runs them through the CLI in-process, editing no other module.

The toy task classifies an image's brightness into dark / medium / bright; its metric is top-1 accuracy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from edgevision.cli import main
from edgevision.data.samples import EvalSet, Sample
from edgevision.models import registry
from edgevision.ops.preprocess import Preprocess
from edgevision.tasks import Accumulator, Task, _loaded, register_task

LABELS = ("dark", "medium", "bright")


@dataclass
class Brightness:
    class_id: int
    scores: np.ndarray

    def to_json(self, labels) -> dict:
        return {"label": labels[self.class_id], "score": round(float(self.scores[self.class_id]), 4)}


class BrightnessPostprocessor:
    def __init__(self, head: dict, imgsz: int, **_) -> None:
        pass

    def __call__(self, outputs, geometry=None) -> Brightness:
        logits = outputs["output"].reshape(-1)
        e = np.exp(logits - logits.max())
        return Brightness(int(logits.argmax()), e / e.sum())


class Top1(Accumulator):
    def __init__(self) -> None:
        self.right = self.total = 0

    def add(self, truth, result: Brightness) -> None:
        expected = truth.class_id if isinstance(truth, Brightness) else int(truth.labels[0])
        self.right += int(result.class_id == expected)
        self.total += 1

    def result(self) -> dict[str, float]:
        return {"top1": 100.0 * self.right / max(self.total, 1)}


class BrightnessTask(Task):
    name = "toy-brightness"
    result_type = Brightness
    postprocessors = {"toy-brightness": f"{__name__}:BrightnessPostprocessor"}
    agreement = ("top1", "agreement_top1")
    json_key = "brightness"
    default_recipe = {"primary_metric": "top1", "eval": {"count": 24, "seed": 3},
                      "tolerances": {"int8": {"top1": {"max_drop": 10}, "agreement_top1": {"min": 60}},
                                     "fp32": {"top1": {"max_drop": 0.1}, "agreement_top1": {"min": 99}}}}

    def accumulator(self, labels, recipe) -> Top1:
        return Top1()

    def synthetic_eval_set(self, imgsz, stride, count, seed):
        rng = np.random.default_rng(seed)
        samples = []
        for i in range(count):
            level = int(rng.integers(0, 256))
            image = np.clip(level + rng.normal(0, 8, (imgsz, imgsz, 3)), 0, 255).astype(np.uint8)
            samples.append(Sample(f"level-{level}", image, np.zeros((0, 4), np.float32),
                                  np.array([min(level * 3 // 256, 2)])))
        return EvalSet(f"{count} flat images (seed {seed})", samples, labelled=True)

    def draw(self, frame_bgr, result: Brightness, labels):
        cv2.putText(frame_bgr, labels[result.class_id], (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
        return frame_bgr


class BrightnessNet(nn.Module):
    """Mean colour -> logits: dark, medium, bright (weights set so that it actually works)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, 1, 1] = 1 / 3
            self.conv.bias.zero_()
            self.head.weight.copy_(torch.tensor([[-6.0] * 8, [0.0] * 8, [6.0] * 8]) / 8)
            self.head.bias.copy_(torch.tensor([-6.0, 0.0, -6.0]))  # dark below x = 1/3, bright above 2/3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x is normalised to 0..1 by the wrapper; centre it so dark < 1/3 < medium < 2/3 < bright
        return self.head(self.conv(x - 0.5).mean((2, 3)) * 6)

    def head_spec(self, imgsz: int) -> dict:
        return {"kind": "toy-brightness"}


@pytest.fixture
def toy_task():
    task = register_task(BrightnessTask())
    variant = registry.register_variant(registry.ModelVariant(
        "toy-brightness-net", f"{__name__}:BrightnessNet", "toy-brightness", imgsz=64, stride=32, labels=LABELS,
        preprocess=Preprocess(resize="plain"), summary="toy model of the toy task (tests only)"))
    yield task, variant
    _loaded.pop(task.name, None)
    registry._BY_NAME.pop(variant.name, None)


@pytest.mark.slow
def test_a_task_registered_from_a_test_exports_checks_and_runs(toy_task, capsys, tmp_path):
    _, variant = toy_task
    weights = tmp_path / "brightness.pt"
    torch.save(BrightnessNet().state_dict(), weights)
    out = tmp_path / "bundle"
    assert main(["export", variant.name, "--target", "cpu", "--precision", "fp32", "--weights", str(weights),
                 "--out", str(out)]) == 0
    meta = json.loads((out / "edgevision.json").read_text())
    assert meta["task"] == "toy-brightness" and meta["recipe"]["primary_metric"] == "top1"
    assert meta["reference"]["metrics"]["top1"] > 90  # the toy model works in FP32

    report_file = tmp_path / "report.json"
    assert main(["check", str(out), "--json", str(report_file)]) == 0, capsys.readouterr().err
    report = json.loads(report_file.read_text())
    assert report["metrics"]["artifact"]["top1"] > 90 and report["agreement"]["agreement_top1"] >= 99
    assert report["golden"]["agreement"]["agreement_top1"] == 100  # golden data stored and compared per task

    frames = tmp_path / "frames"
    frames.mkdir()
    for level in (20, 128, 235):
        cv2.imwrite(str(frames / f"{level:03d}.png"), np.full((48, 80, 3), level, np.uint8))
    jsonl = tmp_path / "run.jsonl"
    assert main(["run", str(out), "--source", str(frames), "--jsonl", str(jsonl), "--out",
                 str(tmp_path / "overlay.mp4")]) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["brightness"]["label"] for line in lines] == ["dark", "medium", "bright"]
