"""Format 1 bundles, as edgevision wrote them before bundles of named graphs (commit 8b0c2d2: one artifact, one
``input`` named "images", golden data stored by output position), still load, check, run and pack: they are read
as the one graph ``model``. ``tests/data/format1-*`` were exported by that commit and are kept unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgevision.bundle import load_bundle, pack_bundle
from edgevision.check.golden import load_golden
from edgevision.cli import main
from edgevision.runtime.base import open_runner

DATA = Path(__file__).parent / "data"
WEIGHTS = Path(__file__).parents[1] / "edgevision" / "models" / "weights" / "mobile-unet.pt"


@pytest.fixture
def old(tmp_path):
    """A copy per test: check writes report.json into the bundle."""
    def copy(target: str) -> Path:
        dst = tmp_path / f"format1-mobile-unet-{target}-int8"
        shutil.copytree(DATA / dst.name, dst)
        return dst
    return copy


def test_format_1_bundles_read_as_one_graph(old):
    for target, artifact_input in (("cpu", "images"), ("rpi", "serving_default_args_0")):
        path = old(target)
        assert json.loads((path / "edgevision.json").read_text())["format_version"] == 1
        b = load_bundle(path)
        assert b.format_read == 1 and list(b.meta.graphs) == ["model"]
        graph = b.meta.graphs["model"]
        assert graph.input("image").artifact_name == artifact_input and graph.output_names == ["output"]
        assert graph.precision == "int8" and graph.quantization["tool"]  # the record moved into the graph
        golden = load_golden(b)  # stored as inputs / argmax_0 / confidence_0
        assert set(golden["model"]["outputs"]) == {"argmax.output", "confidence.output"}
        with open_runner(b) as runner:
            out = runner.run("model", {"image": golden["model"]["inputs"]["image"][:1]})
        assert list(out) == ["output"] and out["output"].shape == (1, 6, 256, 256)
        agree = (out["output"][0].argmax(0) == golden["model"]["outputs"]["argmax.output"][0]).mean()
        assert agree > 0.97, (target, agree)


@pytest.mark.slow
def test_format_1_bundles_check_run_and_pack(old, tmp_path, capsys, monkeypatch):
    cpu = old("cpu")
    # the bundle names its checkpoint by the path it had where it was exported; --weights gives it here
    assert main(["check", str(cpu), "--weights", str(WEIGHTS)]) == 0, capsys.readouterr().err
    report = json.loads((cpu / "report.json").read_text())
    assert report["bundle"]["format_version"] == 1 and report["reference"] == "pytorch"
    assert report["golden"]["agreement"]["agreement_miou"] > 95 and report["passed"]

    rpi = old("rpi")
    assert main(["check", str(rpi), "--no-reference"]) == 0, capsys.readouterr().err
    assert json.loads((rpi / "report.json").read_text())["golden"]["samples"] == 4

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    archive = pack_bundle(rpi, tmp_path / "old-rpi.tar.gz")
    assert main(["check", str(archive), "--no-reference"]) == 0
    assert (tmp_path / "old-rpi.report.json").is_file()

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((120, 160, 3), 40 + 100 * i, np.uint8))
    jsonl = tmp_path / "run.jsonl"
    assert main(["run", str(archive), "--source", str(frames), "--jsonl", str(jsonl), "--out",
                 str(tmp_path / "overlay.mp4")]) == 0
    assert len(jsonl.read_text().splitlines()) == 2


@pytest.mark.slow
def test_format_1_jetson_bundle_checks_with_polygraphy_and_asks_for_tensorrt(old, capsys):
    """The jetson bundle's ONNX keeps its input named "images": Polygraphy and the ONNX Runtime runner bind it by
    that name. build-engine needs TensorRT (a Jetson); here it says so and exits 2."""
    jetson = old("jetson")
    assert main(["check", str(jetson), "--weights", str(WEIGHTS), "--compare-with", "polygraphy"]) == 0, \
        capsys.readouterr().err
    report = json.loads((jetson / "report.json").read_text())
    assert report["compare_with"]["passed"] and report["compare_with"]["comparisons"][0]["graph"] == "model"
    assert "output" in report["compare_with"]["comparisons"][0]["outputs"]
    assert main(["build-engine", str(jetson)]) == 2
    assert "JetPack" in capsys.readouterr().err
