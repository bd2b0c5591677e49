"""Bundles of named graphs: a toy two-graph model (an image encoder and a prompt decoder, as the promptable
segmentation and tracking families are) registered from this test, exported, calibrated graph by graph, checked,
packed and run, with tensors named as in README's table.

The toy task classifies the brightness of the image at a prompted point: ``image_encoder`` turns the uint8 image
into ``image_embeddings``; ``mask_decoder`` takes them with ``point_coords`` (pixels of the model input) and
``point_labels`` (-1: an empty slot) and returns three class logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgevision.bundle import TensorSpec, load_bundle, pack_bundle
from edgevision.cli import main
from edgevision.data.samples import EvalSet, Sample
from edgevision.models import registry
from edgevision.models.wrappers import GraphDef, UInt8Input, image_spec
from edgevision.ops.preprocess import Preprocess
from edgevision.runtime.base import open_runner
from edgevision.tasks import _loaded, register_task

from test_tasks import LABELS, BrightnessTask

IMGSZ = 64
PROMPT = np.array([[[IMGSZ / 4, IMGSZ / 2], [0.0, 0.0]]], np.float32)  # one point in the left half, one empty slot
PROMPT_LABELS = np.array([[1.0, -1.0]], np.float32)


class SpotTask(BrightnessTask):
    name = "toy-spot-brightness"
    postprocessors = {"toy-spot": "test_tasks:BrightnessPostprocessor"}
    graph = "mask_decoder"
    default_recipe = {"primary_metric": "top1", "eval": {"count": 16, "seed": 3},
                      "tolerances": {"int8": {"top1": {"max_drop": 10}, "agreement_top1": {"min": 80}},
                                     "fp32": {"top1": {"max_drop": 0.1}, "agreement_top1": {"min": 99}}}}

    def infer(self, runner, batch):
        """The encoder once per image, then the decoder with the prompt: graph by graph, named tensors."""
        outs = []
        for image in batch:
            emb = runner.run("image_encoder", {"image": image[None]})["image_embeddings"]
            outs.append(runner.run("mask_decoder", {"image_embeddings": emb, "point_coords": PROMPT,
                                                    "point_labels": PROMPT_LABELS}))
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def synthetic_eval_set(self, imgsz, stride, count, seed):
        """The left half of each image has one level (the prompted point's truth), the right half another."""
        rng = np.random.default_rng(seed)
        samples = []
        for _ in range(count):
            left, right = (int(v) for v in rng.integers(0, 256, 2))
            image = np.empty((imgsz, imgsz, 3), np.uint8)
            image[:, : imgsz // 2], image[:, imgsz // 2 :] = left, right
            samples.append(Sample(f"{left}-{right}", image, np.zeros((0, 4), np.float32),
                                  np.array([min(left * 3 // 256, 2)])))
        return EvalSet(f"{count} two-level images (seed {seed})", samples, labelled=True)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 8, stride=8)
        with torch.no_grad():  # channels 0-3: brightness - 0.5; channels 4-7 its negative (both signs in every
            sign = torch.tensor([1.0] * 4 + [-1.0] * 4)  # image, as real embeddings have)
            self.conv.weight.copy_(sign.view(8, 1, 1, 1).expand(8, 3, 8, 8) / (3 * 64))
            self.conv.bias.copy_(-0.5 * sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (N, 8, S/8, S/8)


class Decoder(nn.Module):
    """Soft attention of each prompt point over the embedding grid (no gather, so every converter takes it)."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        centres = (torch.arange(grid, dtype=torch.float32) + 0.5) * (IMGSZ / grid)
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cells", torch.stack([xx.reshape(-1), yy.reshape(-1)], -1))  # (G*G, 2)
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-6.0] * 4 + [6.0] * 4, [0.0] * 8, [6.0] * 4 + [-6.0] * 4]) / 8)
            self.head.bias.copy_(torch.tensor([-6.0, 0.0, -6.0]))  # logits 36 v - 6: dark below v = -1/6, bright above 1/6

    def forward(self, emb: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n, c = emb.shape[:2]
        tokens = emb.reshape(n, c, -1).transpose(1, 2)  # (N, G*G, C)
        d2 = ((coords[:, :, None, :] - self.cells[None, None]) ** 2).sum(-1)  # (N, P, G*G)
        attn = torch.softmax(-d2 / 4.0, -1) * (labels >= 0).float()[..., None]
        picked = (attn @ tokens).sum(1) / (labels >= 0).float().sum(1, keepdim=True).clamp(min=1)
        return self.head(picked * 6)


class SpotNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder(IMGSZ // 8)

    def head_spec(self, imgsz: int) -> dict:
        return {"kind": "toy-spot"}

    def export_graphs(self, imgsz: int, preprocess) -> list[GraphDef]:
        grid = imgsz // 8
        emb = TensorSpec(name="image_embeddings", shape=[1, 8, grid, grid], dtype="float32")
        coords = TensorSpec(name="point_coords", shape=[1, 2, 2], dtype="float32")
        labels = TensorSpec(name="point_labels", shape=[1, 2], dtype="float32")

        def prompts(rng, n):
            return {"point_coords": rng.uniform(0, imgsz, (n, 2, 2)).astype(np.float32),
                    "point_labels": np.where(rng.random((n, 2)) < 0.7, 1.0, -1.0).astype(np.float32)}

        return [GraphDef("image_encoder", UInt8Input(self.encoder, preprocess), [image_spec(imgsz)],
                         ["image_embeddings"]),
                GraphDef("mask_decoder", self.decoder, [emb, coords, labels], ["output"], sample_inputs=prompts)]


@pytest.fixture
def spot_model(tmp_path):
    task = register_task(SpotTask())
    variant = registry.register_variant(registry.ModelVariant(
        "toy-spot-net", f"{__name__}:SpotNet", "toy-spot-brightness", imgsz=IMGSZ, stride=32, labels=LABELS,
        preprocess=Preprocess(resize="plain", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)),
        summary="toy two-graph model (tests only)"))
    weights = tmp_path / "spot.pt"
    torch.save(SpotNet().state_dict(), weights)
    import cv2

    calib = tmp_path / "calib"  # images like the ones the toy model sees (the default set is darker scenes)
    calib.mkdir()
    for sample in task.synthetic_eval_set(IMGSZ, 32, 40, seed=11).samples:
        cv2.imwrite(str(calib / f"{sample.name}.png"), sample.image)
    yield task, variant, weights
    _loaded.pop(task.name, None)
    registry._BY_NAME.pop(variant.name, None)


def _export(variant, weights, out, target="cpu", precision="int8"):
    assert main(["export", variant.name, "--target", target, "--precision", precision, "--weights", str(weights),
                 "--calib", str(weights.parent / "calib"), "--out", str(out)]) == 0


@pytest.mark.slow
def test_two_graphs_export_calibrate_check_pack_and_run(spot_model, tmp_path, capsys, monkeypatch):
    task, variant, weights = spot_model
    out = tmp_path / "spot-cpu-int8"
    _export(variant, weights, out)
    b = load_bundle(out)
    assert list(b.meta.graphs) == ["image_encoder", "mask_decoder"] and b.meta.format_version == 2
    enc, dec = b.meta.graphs["image_encoder"], b.meta.graphs["mask_decoder"]
    assert (enc.artifact, dec.artifact) == ("image_encoder.onnx", "mask_decoder.onnx")
    assert enc.input("image").dtype == "uint8" and enc.input("image").layout == "NHWC"
    assert dec.input_names == ["image_embeddings", "point_coords", "point_labels"]
    assert dec.output("output").shape == [1, 3]
    assert enc.precision == dec.precision == "int8"
    assert dec.calibration["inputs"] == ["image_embeddings", "point_coords", "point_labels"]

    # The decoder was calibrated on what the FP32 encoder made of the calibration images (mean-minmax ranges)
    _assert_decoder_calibrated_on_encoder_outputs(b, variant)

    # Runners take and return named tensors, one graph at a time
    with open_runner(b) as runner:
        emb = runner.run("image_encoder", {"image": np.full((1, IMGSZ, IMGSZ, 3), 250, np.uint8)})
        assert list(emb) == ["image_embeddings"] and emb["image_embeddings"].shape == (1, 8, 8, 8)
        logits = runner.run("mask_decoder", {"image_embeddings": emb["image_embeddings"], "point_coords": PROMPT,
                                             "point_labels": PROMPT_LABELS})
        assert list(logits) == ["output"] and int(logits["output"].argmax()) == 2  # bright
        with pytest.raises(ValueError, match="graph 'mask_decoder' takes inputs"):
            runner.run("mask_decoder", {"image_embeddings": emb["image_embeddings"]})
        with pytest.raises(ValueError, match="no graph 'memory_encoder'"):
            runner.run("memory_encoder", {})
        # the graphs run one after another, so no session's pool may go on spinning on the cores the next one
        # needs once its run returns
        for session in runner.sessions.values():
            assert session.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"

    # golden data per graph, at least 2 samples each, the count recorded
    assert b.meta.golden["graphs"] == {"image_encoder": {"samples": 32}, "mask_decoder": {"samples": 32}}
    report_file = tmp_path / "report.json"
    assert main(["check", str(out), "--json", str(report_file)]) == 0, capsys.readouterr().err
    report = json.loads(report_file.read_text())
    assert report["metrics"]["reference"]["top1"] >= 90 and report["passed"]  # INT8 within the recipe's gate
    assert report["golden"]["graphs"] == {"image_encoder": 32, "mask_decoder": 32}
    assert set(report["golden"]["output_similarity"]) == {"image_encoder/image_embeddings", "mask_decoder/output"}
    sims = report["golden"]["output_similarity"]
    assert all(v["cosine"] > 0.9 for v in sims.values()), sims  # mean-minmax clips the toy's extreme levels
    assert report["bundle"]["graphs"]["mask_decoder"] == {"artifact": "mask_decoder.onnx", "precision": "int8"}

    # packed: check on the archive, without PyTorch's reference (golden only), then run through the CLI
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    archive = pack_bundle(out, tmp_path / "spot.tar.gz")
    assert main(["check", str(archive), "--no-reference"]) == 0
    assert json.loads((tmp_path / "spot.report.json").read_text())["golden"]["agreement"]["agreement_top1"] >= 80
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for left, right in ((20, 235), (128, 20), (235, 128)):
        image = np.empty((48, 80, 3), np.uint8)
        image[:, :40], image[:, 40:] = left, right
        cv2.imwrite(str(frames / f"{left:03d}.png"), image)
    jsonl = tmp_path / "run.jsonl"
    assert main(["run", str(archive), "--source", str(frames), "--jsonl", str(jsonl), "--out",
                 str(tmp_path / "overlay.mp4")]) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["brightness"]["label"] for line in lines] == ["dark", "medium", "bright"]

    # A recipe may keep one graph in float while another is INT8
    monkeypatch.setattr(task, "default_recipe", {**task.default_recipe, "graph_precision": {"mask_decoder": "fp32"}})
    mixed = load_bundle(_export_and_return(variant, weights, tmp_path / "mixed"))
    assert mixed.meta.graphs["image_encoder"].precision == "int8"
    assert mixed.meta.graphs["mask_decoder"].precision == "fp32" and mixed.meta.precision == "int8"
    assert mixed.meta.graphs["mask_decoder"].quantization is None
    assert main(["check", str(mixed.path), "--no-reference"]) == 0

    # ... or do so on one target family only
    per_target = {"target_graph_precision": {"rpi": {"mask_decoder": "fp32"}, "cpu": {"image_encoder": "fp32"}}}
    plain = {k: v for k, v in task.default_recipe.items() if k != "graph_precision"}
    monkeypatch.setattr(task, "default_recipe", {**plain, **per_target})
    on_cpu = load_bundle(_export_and_return(variant, weights, tmp_path / "per-target"))
    assert on_cpu.meta.graphs["image_encoder"].precision == "fp32"
    assert on_cpu.meta.graphs["mask_decoder"].precision == "int8"


def _export_and_return(variant, weights, out):
    _export(variant, weights, out)
    return out


def _assert_decoder_calibrated_on_encoder_outputs(bundle, variant):
    import onnx
    from onnx import numpy_helper

    from edgevision.config import load_recipe
    from edgevision.data.datasets import calibration_set

    recipe = load_recipe(variant.name, variant.task)
    calib = calibration_set(Path(bundle.meta.weights_path).parent / "calib", IMGSZ, variant.stride, "plain",
                            limit=recipe.quantization.subset_size)
    net = SpotNet()
    net.load_state_dict(torch.load(bundle.meta.weights_path, weights_only=True))
    encoder = UInt8Input(net.encoder, variant.preprocess).eval()
    with torch.inference_mode():
        outs = [encoder(torch.from_numpy(b)).numpy() for b in calib.batches]
    lo = min(0.0, float(np.mean([o.min() for o in outs])))
    hi = max(0.0, float(np.mean([o.max() for o in outs])))
    model = onnx.load(str(bundle.graph_path("mask_decoder")))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    tensor = "image_embeddings"  # followed through the reshape and transpose that only move its values
    for op in ("Reshape", "Transpose"):
        (tensor,) = [n.output[0] for n in model.graph.node if n.op_type == op and n.input[0] == tensor]
    (q,) = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    scale = float(inits[q.input[1]])
    # exactly the mean-minmax range of the FP32 encoder's outputs on the calibration images (zeros or random
    # embeddings would give another scale)
    assert scale == pytest.approx((hi - lo) / 255, rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["intel-npu", "rpi"])
def test_two_graphs_on_openvino_and_litert(spot_model, tmp_path, capsys, target):
    """Named binding on every backend that can run here: OpenVINO binds by tensor name, LiteRT by the names
    the .tflite's signature gave its inputs and outputs (recorded at export)."""
    _, variant, weights = spot_model
    out = tmp_path / f"spot-{target}"
    _export(variant, weights, out, target=target)
    b = load_bundle(out)
    dec = b.meta.graphs["mask_decoder"]
    if target == "rpi":
        assert all(t.artifact_name for t in dec.inputs + dec.outputs)
    report_file = tmp_path / "report.json"
    assert main(["check", str(out), "--json", str(report_file)]) == 0, capsys.readouterr().err
    report = json.loads(report_file.read_text())
    assert report["metrics"]["reference"]["top1"] >= 90 and report["passed"]
    assert set(report["golden"]["graphs"]) == {"image_encoder", "mask_decoder"}
